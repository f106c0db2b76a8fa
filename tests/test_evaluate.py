"""COCO evaluation: detections that are the ground truth score 1, perturbed ones score exactly what
COCO's definition of AP predicts, crowd regions are ignored, empty input scores 0, the results are
valid COCO results, ``coco_evaluate`` runs a real model (and gives the same on two processes as on
one), and ``draw_detections`` draws what it is given."""
import json
import pickle
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from maskrcnn_edu.config import shapes
from maskrcnn_edu.data import CocoDataset, ShapesDataset
from maskrcnn_edu.evaluation.coco import (
    SUMMARY_NAMES,
    coco_evaluate,
    coco_ground_truth,
    detections_to_coco,
    evaluate_results,
    format_metrics,
)
from maskrcnn_edu.files import write_json
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.visualize import draw_detections

DATA = Path(__file__).resolve().parent.parent / "data"
EDGE = DATA / "coco_edge_cases"


@pytest.fixture(scope="module")
def shapes10():
    return ShapesDataset(10, seed=3)


@pytest.fixture(scope="module")
def edge():
    return CocoDataset(EDGE / "images", EDGE / "annotations.json")


def as_detections(target: dict, score: float = 1.0) -> dict:
    """A target dressed as the model's output: score ``score``, masks as probabilities 1.0 / 0.0."""
    count = len(target["labels"])
    return {
        "boxes": target["boxes"].clone(),
        "labels": target["labels"].clone(),
        "scores": torch.full((count,), score),
        "masks": target["masks"][:, None].float(),  # [N, 1, H, W]
    }


def ground_truth_detections(dataset):
    """Every image's target as detections, and the images' COCO ids."""
    detections, image_ids = [], []
    for index in range(len(dataset)):
        _, target = dataset[index]
        detections.append(as_detections(target))
        image_ids.append(target["image_id"])  # CocoDataset's is its COCO image id, Shapes' its index
    return detections, image_ids


def score(dataset, detections, image_ids):
    results = detections_to_coco(detections, image_ids, getattr(dataset, "label_to_category_id", None))
    return evaluate_results(coco_ground_truth(dataset), results)


# --- the ground truth as detections scores 1 ------------------------------------------------------------


def test_ground_truth_as_detections_scores_1_on_shapes(shapes10):
    metrics = score(shapes10, *ground_truth_detections(shapes10))
    for iou_type in ("bbox", "segm"):
        for name in ("AP", "AP50", "AP75", "AR100"):
            assert metrics[iou_type][name] == pytest.approx(1.0), (iou_type, name)
        # per-class AP is keyed by the class names, all 1
        assert metrics[iou_type]["per_class"] == pytest.approx({"square": 1.0, "circle": 1.0,
                                                                "triangle": 1.0})


def test_ground_truth_as_detections_scores_1_on_coco_edge_cases_despite_the_crowd(edge):
    # image 2 holds a crowd square that no detection covers: were it an object to find, the
    # square's recall would be 1/2; COCOeval ignores it, so everything scores 1.
    metrics = score(edge, *ground_truth_detections(edge))
    for iou_type in ("bbox", "segm"):
        for name in ("AP", "AP50", "AP75", "APs", "AR100"):
            assert metrics[iou_type][name] == pytest.approx(1.0), (iou_type, name)
        # every object is small (< 32^2 px): medium and large are undefined -> None, not pycocotools' -1
        for name in ("APm", "APl", "ARm", "ARl"):
            assert metrics[iou_type][name] is None, (iou_type, name)
        # non-contiguous category ids 3 and 7, named through the file's categories
        assert metrics[iou_type]["per_class"] == pytest.approx({"square": 1.0, "disk": 1.0})


def test_a_detection_on_a_crowd_region_is_not_a_false_positive(edge):
    detections, image_ids = ground_truth_detections(edge)
    for detection in detections:
        detection["scores"][:] = 0.9
    # The best-scoring detection of all covers the crowd square of image 2 (index 1). Counted as a
    # false positive it would rank first and halve the square's precision: AP 0.5 instead of 1.
    crowd = as_detections(edge.crowd_target(1), score=1.0)
    detections[1] = {key: torch.cat([detections[1][key], crowd[key]]) for key in crowd}
    metrics = score(edge, detections, image_ids)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["per_class"]["square"] == pytest.approx(1.0)


def test_a_target_may_mark_crowds_with_iscrowd():
    # A user's dataset (a plain list, no class_names): torchvision's `iscrowd` in the target makes
    # the second instance a crowd, so finding only the first one scores 1.
    masks = torch.zeros(2, 20, 20, dtype=torch.uint8)
    masks[0, 2:8, 2:8] = masks[1, 10:18, 10:18] = 1
    target = {"boxes": torch.tensor([[2.0, 2, 8, 8], [10, 10, 18, 18]]), "labels": torch.tensor([1, 1]),
              "masks": masks, "image_id": 5, "iscrowd": torch.tensor([0, 1])}
    dataset = [(torch.zeros(3, 20, 20), target)]
    gt = coco_ground_truth(dataset)
    assert gt.cats == {1: {"id": 1, "name": "class 1"}}
    assert [a["iscrowd"] for a in gt.anns.values()] == [0, 1]
    found = as_detections({key: target[key][:1] for key in ("boxes", "labels", "masks")})
    metrics = evaluate_results(gt, detections_to_coco([found], [5]))
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and metrics["segm"]["AP"] == pytest.approx(1.0)


# --- no detections -------------------------------------------------------------------------------------


def test_no_detections_score_0_without_crashing(shapes10, edge):
    for dataset in (shapes10, edge):
        metrics = evaluate_results(coco_ground_truth(dataset), [])
        for iou_type in ("bbox", "segm"):
            for name in ("AP", "AP50", "AP75", "AR1", "AR100"):
                assert metrics[iou_type][name] == 0.0
            assert set(metrics[iou_type]["per_class"].values()) == {0.0}
    # the edge cases have no large object: undefined stays None, even with no detections
    assert metrics["bbox"]["APl"] is None


def test_images_without_detections_are_skipped(shapes10):
    detections, image_ids = ground_truth_detections(shapes10)
    empty = {key: value[:0] for key, value in detections[0].items()}
    assert detections_to_coco([empty], [image_ids[0]]) == []


# --- perturbed detections score what COCO's definition predicts ------------------------------------------


def test_boxes_shifted_by_a_fifth_of_their_width_pass_iou_050_but_not_075(shapes10):
    # A box shifted sideways by 0.2 w overlaps its original over 0.8 w * h, their union is
    # 1.2 w * h: IoU 2/3 for every box, whatever its size. So every detection is correct at the IoU
    # thresholds 0.50, 0.55, 0.60, 0.65 and wrong at 0.70 ... 0.95: AP50 = 1, AP75 = 0, and
    # AP (the mean over the ten thresholds) = 4/10. The masks did not move: mask AP stays 1.
    detections, image_ids = ground_truth_detections(shapes10)
    for detection in detections:
        boxes = detection["boxes"]
        shift = 0.2 * (boxes[:, 2] - boxes[:, 0])
        detection["boxes"] = boxes + torch.stack([shift, torch.zeros_like(shift)] * 2, dim=1)
    metrics = score(shapes10, detections, image_ids)
    assert metrics["bbox"]["AP50"] == pytest.approx(1.0)
    assert metrics["bbox"]["AP75"] == pytest.approx(0.0)
    assert metrics["bbox"]["AP"] == pytest.approx(0.4)
    assert metrics["segm"]["AP"] == pytest.approx(1.0)


def test_dropping_half_the_detections_lowers_recall_and_ap_as_predicted(shapes10):
    # Drop every second instance of each class. Class c keeps k_c of its n_c objects, all found
    # exactly, so its recall is k_c / n_c at every IoU threshold, and its precision is 1 up to that
    # recall. COCO's AP averages the (interpolated) precision at the 101 recall levels 0, 0.01, ..., 1;
    # levels beyond the recall reached count 0. So AP_c = (levels <= k_c / n_c) / 101.
    detections, image_ids = ground_truth_detections(shapes10)
    seen = {1: 0, 2: 0, 3: 0}
    kept, total = dict(seen), dict(seen)
    for detection in detections:
        keep = []
        for label in detection["labels"].tolist():
            keep.append(seen[label] % 2 == 0)
            seen[label] += 1
            kept[label] += keep[-1]
            total[label] += 1
        keep = torch.tensor(keep, dtype=torch.bool)
        for key in detection:
            detection[key] = detection[key][keep]
    recall = {label: kept[label] / total[label] for label in total}
    levels = np.linspace(0, 1, 101)
    expected_ap = {label: float(np.mean(levels <= r + 1e-12)) for label, r in recall.items()}
    metrics = score(shapes10, detections, image_ids)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AR100"] == pytest.approx(np.mean(list(recall.values())))
        assert metrics[iou_type]["AP"] == pytest.approx(np.mean(list(expected_ap.values())))
        assert metrics[iou_type]["per_class"]["square"] == pytest.approx(expected_ap[1])
        assert 0.4 < metrics[iou_type]["AP"] < 0.75  # about half, as it should be


def test_a_mask_is_sized_by_its_area_not_its_box(shapes10):
    # COCO sorts objects into small / medium / large by area: for masks, the mask's own area. An
    # L-shaped false positive along two image edges covers 119 pixels (small) but its box is
    # 60 x 60 = 3600 (medium). Ranked first, it must lower the small masks' AP, and leave the
    # medium masks' AP at 1.
    detections, image_ids = ground_truth_detections(shapes10)
    for detection in detections:
        detection["scores"][:] = 0.9
    mask = torch.zeros(1, 1, 128, 128)
    mask[0, 0, 0, :60] = mask[0, 0, :60, 0] = 1.0
    false_positive = {"boxes": torch.tensor([[0.0, 0.0, 60.0, 60.0]]), "labels": torch.tensor([1]),
                      "scores": torch.tensor([1.0]), "masks": mask}
    detections[0] = {key: torch.cat([false_positive[key], detections[0][key]]) for key in false_positive}
    metrics = score(shapes10, detections, image_ids)
    assert metrics["segm"]["APs"] < 1.0
    assert metrics["segm"]["APm"] == pytest.approx(1.0)


# --- the results format --------------------------------------------------------------------------------


def test_detections_to_coco_golden_values():
    # One 4 x 5 image, two detections; labels 1, 2 are the COCO category ids 3, 7 (edge-case set).
    probabilities = torch.zeros(2, 1, 4, 5)
    probabilities[0, 0, 1:3, 1:4] = 0.9  # rows 1-2, cols 1-3
    probabilities[0, 0, 3, 4] = 0.5  # exactly the threshold: not in the mask (kept where > 0.5)
    probabilities[1, 0, 0, 0] = 0.6
    detections = {
        "boxes": torch.tensor([[1.0, 1.0, 4.0, 3.0], [0.0, 0.0, 1.0, 1.0]]),
        "labels": torch.tensor([2, 1]),
        "scores": torch.tensor([0.75, 0.25]),
        "masks": probabilities,
    }
    results = detections_to_coco([detections], [42], label_to_category_id={1: 3, 2: 7})
    assert [r["image_id"] for r in results] == [42, 42]
    assert [r["category_id"] for r in results] == [7, 3]
    assert [r["bbox"] for r in results] == [[1.0, 1.0, 3.0, 2.0], [0.0, 0.0, 1.0, 1.0]]  # x, y, w, h
    assert [r["score"] for r in results] == [0.75, 0.25]
    # RLE runs go down the columns, starting with background: column 0 is 4 zeros, columns 1-3 are
    # 0 1 1 0 each, column 4 is 4 zeros -> runs 5, 2, 2, 2, 2, 2, 5 (20 pixels).
    expected = mask_utils.frPyObjects({"size": [4, 5], "counts": [5, 2, 2, 2, 2, 2, 5]}, 4, 5)
    assert results[0]["segmentation"] == {"size": [4, 5], "counts": expected["counts"].decode("ascii")}
    assert np.array_equal(mask_utils.decode(results[1]["segmentation"]), (probabilities[1, 0] > 0.5).numpy())
    json.dumps(results)  # counts are str: the results are JSON as they are


def test_detections_to_coco_takes_binary_masks_as_they_are_and_rejects_unknown_labels():
    masks = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    masks[0, 0, 1, 1] = True
    detection = {"boxes": torch.tensor([[1.0, 1.0, 2.0, 2.0]]), "labels": torch.tensor([1]),
                 "scores": torch.tensor([0.5]), "masks": masks}
    (result,) = detections_to_coco([detection], [7])
    assert result["category_id"] == 1  # no mapping: the label is the category id
    assert mask_utils.area(result["segmentation"]) == 1
    with pytest.raises(ValueError, match=r"image id 7: labels \[1\] have no category id"):
        detections_to_coco([detection], [7], label_to_category_id={2: 5})
    with pytest.raises(ValueError, match="2 detection dicts for 1 image ids"):
        detections_to_coco([detection, detection], [7])


def test_built_ground_truth_is_the_shipped_export(tmp_path):
    # data/shapes_sample is `export-shapes --num-images 20 --seed 12345`: the in-memory ground truth
    # of the same images must have the same annotations, as an exported set evaluates the same.
    shipped = json.loads((DATA / "shapes_sample" / "annotations.json").read_text())
    built = coco_ground_truth(ShapesDataset(20, seed=12345)).dataset
    assert built["categories"] == [{"id": c["id"], "name": c["name"]} for c in shipped["categories"]]
    assert [(i["id"], i["height"], i["width"]) for i in built["images"]] == [
        (i["id"], i["height"], i["width"]) for i in shipped["images"]
    ]
    assert built["annotations"] == shipped["annotations"]


def test_ground_truth_missing_bbox_area_iscrowd_is_completed_in_a_copy(edge):
    # A COCO file from another tool may leave out the fields COCOeval reads; they come from the mask.
    class Minimal:
        coco = CocoDataset(EDGE / "images", EDGE / "annotations.json").coco

    for annotation in Minimal.coco.dataset["annotations"]:
        for key in ("bbox", "area", "iscrowd"):
            annotation.pop(key)
    completed = coco_ground_truth(Minimal())
    assert "bbox" not in Minimal.coco.anns[10]  # the dataset's own object is left alone
    assert completed.anns[10]["bbox"] == [1.0, 1.0, 11.0, 9.0]  # both parts of the polygon
    assert completed.anns[10]["area"] == 28.0 and completed.anns[10]["iscrowd"] == 0
    assert completed.anns[21]["iscrowd"] == 0  # without the field, a crowd cannot be known
    results = detections_to_coco(*ground_truth_detections(edge), edge.label_to_category_id)
    metrics = evaluate_results(completed, results)
    # ... so the former crowd is now a square that nobody found: the disk scores 1, the square has
    # recall 1/2, precision 1 at recall levels 0 .. 0.50 (51 of 101): AP50 = (1 + 51/101) / 2.
    assert metrics["bbox"]["per_class"]["disk"] == pytest.approx(1.0)
    assert metrics["bbox"]["AP50"] == pytest.approx((1 + 51 / 101) / 2)


def test_evaluate_results_rejects_bad_input(edge):
    gt = coco_ground_truth(edge)
    result = {"image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 1.0}
    with pytest.raises(ValueError, match=r"image ids \[99\]"):
        evaluate_results(gt, [result], iou_types=("bbox",))
    with pytest.raises(ValueError, match="no 'segmentation'"):
        evaluate_results(gt, [{**result, "image_id": 1}], iou_types=("segm",))
    with pytest.raises(ValueError, match="iou_types"):
        evaluate_results(gt, [], iou_types=("keypoints",))


def test_format_metrics_is_a_table_that_says_which_ranges_are_empty(edge):
    text = format_metrics(score(edge, *ground_truth_detections(edge)))
    lines = text.splitlines()
    assert lines[0].split() == ["bbox", "segm"]
    assert lines[1].split() == ["AP", "1.000", "1.000"]
    assert "APm n/a n/a".split() in [line.split() for line in lines]
    assert lines[-3:-1] == [f"{'square':<12}{'1.000':>8}{'1.000':>8}",
                            f"{'disk':<12}{'1.000':>8}{'1.000':>8}"]
    assert lines[-1].startswith("n/a: no ground-truth object of that size or class")
    # with every number defined, no note
    defined = {t: {**{name: 0.5 for name in SUMMARY_NAMES}, "per_class": {"disk": 0.5}}
               for t in ("bbox", "segm")}
    assert "n/a" not in format_metrics(defined)


def _reject_nan(constant):
    raise ValueError(f"{constant} is not JSON")


def test_metrics_files_are_strict_json_with_null_for_empty_ranges(shapes10, tmp_path):
    # Shapes has no large object (> 96^2 px): APl and ARl are undefined. The metrics file must hold
    # null there, not the bare NaN that Python's json writes for nan and strict parsers reject.
    metrics = score(shapes10, *ground_truth_detections(shapes10))
    path = write_json(tmp_path / "metrics.json", {"checkpoint": "x.pt", **metrics})
    read = json.loads(path.read_text(), parse_constant=_reject_nan)
    for iou_type in ("bbox", "segm"):
        assert read[iou_type]["APl"] is None and read[iou_type]["ARl"] is None
        assert read[iou_type]["AP"] == pytest.approx(1.0)
    assert "null" in path.read_text() and "NaN" not in path.read_text()


# --- coco_evaluate ---------------------------------------------------------------------------------------


class Oracle(torch.nn.Module):
    """A stand-in model that detects exactly the ground truth of the images it is shown: it finds
    the shown image among the dataset's and returns its target, score 1."""

    def __init__(self, dataset):
        super().__init__()
        self.samples = [dataset[i] for i in range(len(dataset))]

    def forward(self, images):
        assert not self.training and not torch.is_grad_enabled()
        return [next(as_detections(t) for im, t in self.samples if torch.equal(im, image))
                for image in images]


@pytest.mark.parametrize("name", ["shapes", "edge", "edge_disks_only"])
def test_coco_evaluate_of_a_perfect_model_is_1(name, shapes10, edge):
    # ids, the label -> category mapping and the crowd go through coco_evaluate's own plumbing:
    # CocoDataset's dataset.coco, and the ground truth built from Shapes targets during the pass.
    # A CocoDataset of some categories is scored on those only (dataset.coco has the squares too).
    dataset = {
        "shapes": shapes10,
        "edge": edge,
        "edge_disks_only": CocoDataset(EDGE / "images", EDGE / "annotations.json", categories=["disk"]),
    }[name]
    metrics, results = coco_evaluate(Oracle(dataset), dataset, batch_size=2, progress=False)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(1.0)
        assert list(metrics[iou_type]["per_class"]) == dataset.class_names[1:]
    expected_ids = [target["image_id"] for _, target in map(dataset.__getitem__, range(len(dataset)))
                    if len(target["labels"])]
    # every image with objects, by its COCO id
    assert sorted({r["image_id"] for r in results}) == expected_ids


@pytest.mark.parametrize("name", ["shapes", "edge"])
def test_coco_evaluate_scores_only_num_images(name, shapes10, edge):
    # Only the first images are run; the objects of the others (in dataset.coco for the edge cases:
    # the disk of image 2) must not count as missed.
    dataset, count = (shapes10, 3) if name == "shapes" else (edge, 1)
    metrics, results = coco_evaluate(Oracle(dataset), dataset, progress=False, num_images=count)
    assert {r["image_id"] for r in results} == {dataset[i][1]["image_id"] for i in range(count)}
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AR100"] == pytest.approx(1.0)
        assert metrics[iou_type]["AP"] == pytest.approx(1.0)


def test_coco_evaluate_warns_when_dataset_coco_may_not_describe_the_images():
    dataset = CocoDataset(EDGE / "images", EDGE / "annotations.json",
                          transforms=lambda image, target: (image, target))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coco_evaluate(Oracle(dataset), dataset, progress=False)
    assert any(w.category is UserWarning and "dataset has transforms" in str(w.message) for w in caught)


def test_coco_evaluate_runs_an_untrained_model_and_restores_its_mode():
    torch.manual_seed(0)
    model = MaskRCNN(shapes())
    model.train()
    dataset = ShapesDataset(6, seed=1)
    metrics, results = coco_evaluate(model, dataset, batch_size=2, progress=False, num_images=4)
    assert model.training  # put back as it was
    assert set(metrics) == {"bbox", "segm"}
    for iou_type in ("bbox", "segm"):
        assert set(metrics[iou_type]) == {*SUMMARY_NAMES, "per_class"}
        assert list(metrics[iou_type]["per_class"]) == ["square", "circle", "triangle"]
        values = [metrics[iou_type][name] for name in SUMMARY_NAMES]
        values += list(metrics[iou_type]["per_class"].values())
        assert all(v is None or (type(v) is float and 0.0 <= v <= 1.0) for v in values)
    # an untrained model still outputs up to 20 detections an image, on the images run only
    assert results and {r["image_id"] for r in results} <= {0, 1, 2, 3}
    assert set(results[0]) == {"image_id", "category_id", "bbox", "score", "segmentation"}
    json.dumps(results)


def test_coco_evaluate_leaves_an_eval_model_in_eval_mode(edge):
    model = Oracle(edge).eval()  # the oracle asserts eval mode and no gradients when it runs
    coco_evaluate(model, edge, progress=False)
    assert not model.training


def _distributed_worker(rank, world_size, store, out_dir):
    """One process of a 2-process group: evaluate the oracle on its shard, write what it returns."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                         world_size=world_size)
    try:
        dataset = ShapesDataset(5, seed=3)
        returned = coco_evaluate(Oracle(dataset), dataset, batch_size=2, progress=False)
        with open(Path(out_dir) / f"rank{rank}.pkl", "wb") as file:
            pickle.dump(returned, file)
    finally:
        torch.distributed.destroy_process_group()


def test_coco_evaluate_on_two_processes_gives_what_one_gives(tmp_path):
    # 5 images on 2 ranks: rank 0 runs images 0, 2, 4 and rank 1 images 1, 3. Both ranks return the
    # full, index-ordered results and the same metrics as a single process.
    dataset = ShapesDataset(5, seed=3)
    expected = coco_evaluate(Oracle(dataset), dataset, batch_size=2, progress=False)
    torch.multiprocessing.spawn(_distributed_worker, args=(2, tmp_path / "store", tmp_path), nprocs=2)
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as file:
            metrics, results = pickle.load(file)
        assert results == expected[1]
        assert metrics == expected[0]


# --- draw_detections ---------------------------------------------------------------------------------


def test_draw_detections_draws_the_detections_above_the_threshold():
    image = torch.full((3, 8, 10), 0.5)
    masks = torch.zeros(3, 1, 8, 10)
    masks[0, 0, 2:6, 2:6] = 0.9  # overlaps the mask of detection 2 at rows 4-5, cols 4-5
    masks[1, 0, 0:2, 0:2] = 0.9
    masks[2, 0, 4:8, 4:8] = 0.9
    detections = {
        "boxes": torch.tensor([[2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0], [4.0, 4.0, 8.0, 8.0]]),
        "labels": torch.tensor([1, 2, 3]),
        "scores": torch.tensor([0.6, 0.3, 0.9]),
        "masks": masks,
    }
    fig, ax = plt.subplots()
    try:
        assert draw_detections(ax, image, detections, ["background", "square", "circle", "triangle"]) is ax
        assert len(ax.patches) == 2  # the 0.3 detection is below the threshold
        assert sorted(text.get_text() for text in ax.texts) == ["square 0.60", "triangle 0.90"]
        overlay = np.asarray(ax.images[1].get_array())  # [H, W, 4], after the image itself
        assert overlay.shape == (8, 10, 4)
        assert overlay[0, 0, 3] == 0  # detection 1 is not drawn: its pixels stay clear
        assert overlay[5, 5, 3] > 0 and overlay[3, 3, 3] > 0 and overlay[7, 7, 3] > 0
        # the overlap shows the better detection (0.9, triangle), as its own pixels do
        assert np.array_equal(overlay[5, 5], overlay[7, 7])
        assert not np.array_equal(overlay[5, 5], overlay[3, 3])
        # boxes in continuous pixel coordinates: the image spans [0, W] x [0, H], y down
        assert ax.images[0].get_extent() == [0, 10, 8, 0]
    finally:
        plt.close(fig)


def test_draw_detections_without_masks_or_names():
    detections = {"boxes": torch.tensor([[1.0, 1.0, 3.0, 3.0]]), "labels": torch.tensor([5]),
                  "scores": torch.tensor([0.8])}
    fig, ax = plt.subplots()
    try:
        draw_detections(ax, torch.zeros(3, 4, 4), detections)
        assert len(ax.images) == 1 and len(ax.patches) == 1
        assert ax.texts[0].get_text() == "5 0.80"
    finally:
        plt.close(fig)
