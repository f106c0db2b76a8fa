"""Chapter 10's explorer and figures: the ablation table against the paper, one image's detections of a
variant beside the baseline's (hand-made detections, so nothing depends on the sweep's output), and
the training monitor."""
import numpy as np
import pytest
import torch

from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.data.export import encode_masks
from maskrcnn_edu.explorers.ablation_images import (ablation_explorer, ablation_view, compare_image,
                                                     instances_from_results)
from maskrcnn_edu.explorers.ablations import compare_with_paper, draw_ablation_bars, format_ablation_table
from maskrcnn_edu.explorers.monitor import TrainingMonitor, draw_training_progress


def _result(image_id, label, mask, score):
    """One COCO result (as coco_eval writes them) for a binary ``mask [H, W]``."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    rle = encode_masks(torch.as_tensor(mask, dtype=torch.uint8)[None])[0]
    return {"image_id": image_id, "category_id": int(label), "score": score,
            "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0], "segmentation": rle}


@pytest.fixture(scope="module")
def shapes():
    return ShapesDataset(3, seed=3)


@pytest.fixture(scope="module")
def detections(shapes):
    """The baseline finds every object of image 0 exactly (and adds a low-scoring square on the
    background); RoIPool finds object 0 shifted 3 px right, misses object 1, and calls the last object
    by another class."""
    _, target = shapes[0]
    masks, labels = target["masks"].numpy().astype(bool), target["labels"].numpy()
    assert len(labels) >= 3  # the test below needs three objects
    background = np.zeros_like(masks[0])
    background[:4, :4] = True
    baseline = [_result(0, label, mask, 0.9 - 0.1 * k) for k, (label, mask) in enumerate(zip(labels, masks))]
    baseline.append(_result(0, 1, background, 0.3))
    shifted = np.roll(masks[0], 3, axis=1)
    wrong_class = labels[-1] % 3 + 1
    roipool = [_result(0, labels[0], shifted, 0.95), _result(0, wrong_class, masks[-1], 0.8)]
    baseline.append(_result(1, 2, background, 0.99))  # another image: must not show on image 0
    return {"roialign_sigmoid": baseline, "roipool": roipool, "softmax": []}


def test_instances_decode_and_filter(shapes, detections):
    _, target = shapes[0]
    size = tuple(target["masks"].shape[1:])
    everything = instances_from_results(detections["roialign_sigmoid"], 0, size)
    assert len(everything) == len(target["labels"]) + 1   # image 1's detection is left out
    assert np.all(np.diff(everything.scores) <= 0)        # best first
    assert np.array_equal(everything.masks[0], target["masks"][0].numpy().astype(bool))
    assert np.allclose(everything.boxes[0], target["boxes"][0].numpy())  # tight boxes both
    confident = instances_from_results(detections["roialign_sigmoid"], 0, size, score_threshold=0.5)
    assert len(confident) == len(target["labels"])
    assert len(instances_from_results(detections["softmax"], 0, size)) == 0


def test_compare_image_counts(shapes, detections):
    _, target = shapes[0]
    objects = len(target["labels"])
    base, pool = compare_image(detections, "roipool", target, 0, score_threshold=0.5)
    expected = (objects, objects, 1.0, objects)
    assert (base.detections, base.matched, base.mean_iou, base.matched_at(0.75)) == expected
    assert len(base.matches.false_positives) == 0
    mask = target["masks"][0].numpy().astype(bool)
    shifted = np.roll(mask, 3, axis=1)
    expected_iou = (mask & shifted).sum() / (mask | shifted).sum()
    assert pool.detections == 2 and pool.matched == (1 if expected_iou >= 0.5 else 0)
    if pool.matched:
        assert np.isclose(pool.mean_iou, expected_iou)
    assert pool.matches.false_positives.tolist() == [1] + ([] if pool.matched else [0])
    assert len(pool.matches.missed) == objects - pool.matched
    # With a low threshold the baseline's square on the background comes in, unmatched.
    base_all, _ = compare_image(detections, "roipool", target, 0, score_threshold=0.1)
    assert base_all.detections == objects + 1 and base_all.matches.false_positives.tolist() == [objects]
    with pytest.raises(ValueError, match="'mlp' has no detections"):
        compare_image(detections, "mlp", target, 0)


def test_explorer_controls(shapes, detections):
    explorer = ablation_explorer(detections, shapes, draw=False)
    assert [value for _, value in explorer.controls["variant"].options] == ["roipool", "softmax"]
    assert explorer.controls["image_id"].max == 1  # the detections cover images 0 and 1
    _, target = shapes[0]
    objects = len(target["labels"])
    state = explorer.state
    assert state.image_id == 0 and state.variant.variant == "roipool"
    assert f"image 0 ({objects} objects)" in state.caption
    assert (f"RoIAlign + sigmoid (baseline): {objects} detections, {objects} of {objects} objects matched"
            in state.caption)
    explorer.controls["variant"].value = "softmax"
    assert explorer.state.variant.detections == 0
    assert (f"softmax over classes: 0 detections, 0 of {objects} objects matched (mean mask IoU –"
            in explorer.state.caption)
    assert explorer.state.caption.endswith("0 false positives")
    explorer.controls["score_threshold"].value = 0.25
    assert explorer.state.baseline.detections == objects + 1
    assert "1 false positive;" in explorer.state.caption  # singular
    explorer.controls["image_id"].value = 1
    _, target1 = shapes[1]
    assert explorer.state.baseline.detections == 1
    assert explorer.state.baseline.objects == len(target1["labels"])
    assert "(baseline): 1 detection, 0 of" in explorer.state.caption


def test_view_draws_three_panels(shapes, detections):
    view = ablation_view(detections, shapes, "roipool", 0)
    assert len(view.figure.axes) == 3
    assert view.figure.axes[0].get_title().startswith("ground truth, image 0")
    assert view.figure.axes[2].get_title().startswith("RoIPool")


def test_explorer_needs_the_baseline_and_another_variant(shapes, detections):
    with pytest.raises(ValueError, match="baseline"):
        ablation_explorer({"roipool": detections["roipool"]}, shapes)
    with pytest.raises(ValueError, match="at least one other variant"):
        ablation_explorer({"roialign_sigmoid": detections["roialign_sigmoid"]}, shapes)


def _stats(*values):
    return {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}


def _report(with_softmax: bool):
    def row(ap, ap50, ap75, seeds=(0, 1)):
        return {"seeds": list(seeds), "segm_AP": _stats(*ap), "segm_AP50": _stats(*ap50),
                "segm_AP75": _stats(*ap75), "bbox_AP": _stats(*ap)}

    table = {"roialign_sigmoid": row((0.70, 0.72), (0.90, 0.92), (0.78, 0.80)),
             "roipool": row((0.60, 0.64), (0.91, 0.93), (0.60, 0.62))}
    if with_softmax:
        table["softmax"] = row((0.71, 0.75), (0.90, 0.90), (0.79, 0.79))
    runs = [{"variant": v, "seed": s,
             **{f"segm_{m}": table[v][f"segm_{m}"]["min"] for m in ("AP", "AP50", "AP75")}}
            for v in table for s in (0, 1)]
    paper = {"roipool_vs_roialign": {"backbone": "ResNet-50-C5, stride 32",
                                     "roipool": {"AP": 23.6, "AP50": 46.5, "AP75": 21.6},
                                     "roialign": {"AP": 30.9, "AP50": 51.8, "AP75": 32.1}},
             "softmax_vs_sigmoid": {"backbone": "ResNet-50-C4",
                                    "softmax": {"AP": 24.8, "AP50": 44.1, "AP75": 25.1},
                                    "sigmoid": {"AP": 30.3, "AP50": 51.2, "AP75": 31.5}}}
    return {"settings": {"steps": 400, "batch_size": 8}, "test_set": {"images": 200}, "paper": paper,
            "results": {"table": table, "runs": runs}}


def test_comparisons_against_the_paper():
    comparisons = {(c.name, c.metric): c for c in compare_with_paper(_report(with_softmax=True))}
    pool_ap75 = comparisons[("RoIAlign − RoIPool", "AP75")]
    def fields(c):
        return c.ours, c.paper, c.same_direction, c.beyond_spread

    assert fields(pool_ap75) == (18.0, 10.5, True, True)
    pool_ap50 = comparisons[("RoIAlign − RoIPool", "AP50")]
    assert fields(pool_ap50) == (-1.0, 5.3, False, False)
    soft_ap = comparisons[("sigmoid − softmax", "AP")]
    assert fields(soft_ap) == (-2.0, 5.5, False, False)
    assert pool_ap75.sentence() == ("RoIAlign − RoIPool, mask AP75: +18.0 points here (paper: +10.5); "
                                    "same direction, beyond the seeds' spread")
    assert "OPPOSITE direction, within the seeds' spread" in pool_ap50.sentence()


def test_one_seed_has_no_spread():
    report = _report(with_softmax=True)
    report["results"]["table"]["roipool"]["seeds"] = [0]
    pool = [c for c in compare_with_paper(report) if c.name == "RoIAlign − RoIPool"]
    assert all(c.beyond_spread is None for c in pool) and pool[2].ours == 18.0
    assert pool[2].sentence().endswith("same direction, one seed only, no spread to compare with")


def test_missing_variant_is_reported_not_guessed():
    report = _report(with_softmax=False)
    missing = [c for c in compare_with_paper(report) if c.name == "sigmoid − softmax"]
    assert len(missing) == 3 and all(c.ours is None for c in missing)
    assert missing[0].sentence() == "sigmoid − softmax, mask AP: not measured yet (paper: +5.5)"
    table = format_ablation_table(report)
    assert "not measured yet: softmax over classes" in table
    assert "RoIAlign + sigmoid (baseline)" in table and "71.0 (70.0–72.0)" in table
    assert "roialign, ResNet-50-C5, stride 32" in table and "32.1" in table
    assert len(draw_ablation_bars(report).axes) == 2


class _Toy(torch.nn.Module):
    """Returns a loss dict in training mode and draws from the global generator in eval mode."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        if self.training:
            return {"loss_a": (self.weight * x).sum(), "loss_b": self.weight.sum() * 2}
        return torch.rand(3) * x.sum()


def test_monitor_records_training_losses_and_leaves_the_random_state_alone():
    model = _Toy()
    seen = []
    def evaluate(m, d):
        return {"segm": {"AP": float(m(d)[0] > -1), "AP50": 0.5, "AP75": None},
                "bbox": {"AP": 0.25, "AP50": None, "AP75": None}}

    monitor = TrainingMonitor(evaluate=evaluate, on_validation=lambda mon: seen.append(len(mon.validations)),
                              start_step=10).attach(model)
    model.train()
    for value in (1.0, 2.0, 3.0):
        model(torch.tensor([value]))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    model.eval()
    metrics = monitor(model, torch.tensor([1.0]))
    assert torch.equal(torch.get_rng_state(), state)  # evaluation drew random numbers inside fork_rng
    model(torch.tensor([5.0]))  # eval mode: not a training step
    assert monitor.losses == {"loss_a": [1.0, 2.0, 3.0], "loss_b": [2.0, 2.0, 2.0]}
    assert monitor.steps.tolist() == [11, 12, 13]
    assert monitor.validations == [(13, metrics)] and seen == [1]
    assert len(draw_training_progress(monitor, total_steps=20).axes) == 2
    monitor.detach()
    model.train()
    model(torch.tensor([1.0]))
    assert len(monitor.losses["loss_a"]) == 3
