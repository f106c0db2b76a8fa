"""``maskrcnn_edu.visualize``: every drawing, from real traces of the shipped Shapes model.

The assertions read back what a figure holds (the boxes of each style, the arrays of each image,
the numbers in titles and table cells) and compare it with the trace, so a drawing that showed
the wrong anchors, the wrong counts or the wrong class's logits would fail.
"""
import copy
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from maskrcnn_edu import visualize as V
from maskrcnn_edu.config import shapes
from maskrcnn_edu.boxes import box_iou
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.matching import BACKGROUND_LABEL, IGNORE


@pytest.fixture(scope="module")
def sample():
    return ShapesDataset(4, seed=0)[0]


@pytest.fixture(scope="module")
def trace(model, sample):
    return model.trace(sample[0])


@pytest.fixture(scope="module")
def training_trace(model, sample):
    return model.trace(*sample)


@pytest.fixture(scope="module")
def class_names(model):
    return model.config.class_names


# Reading figures back -----------------------------------------------------------------------------


def boxes_of(ax, gid: str) -> np.ndarray:
    """``[N, 4]`` boxes (x0, y0, x1, y1) of every rectangle drawn on ``ax`` in the style ``gid``."""
    boxes = [
        np.r_[path.vertices.min(axis=0), path.vertices.max(axis=0)]
        for collection in ax.collections
        if isinstance(collection, PatchCollection) and collection.get_gid() == gid
        for path in collection.get_paths()
    ]
    return np.asarray(boxes).reshape(-1, 4)


def count(ax, gid: str) -> int:
    return len(boxes_of(ax, gid))


def same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """The same set of boxes, in any order."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    unique_a, unique_b = np.unique(a.round(3), axis=0), np.unique(b.round(3), axis=0)
    return a.shape == b.shape and np.allclose(unique_a, unique_b, atol=1e-3)


def visible_axes(fig: Figure) -> list:
    """The figure's panels, colour bars left out (they carry no title of their own)."""
    return [ax for ax in fig.get_axes() if ax.get_visible() and ax.get_label() != "<colorbar>"]


def images_of(ax) -> list[np.ndarray]:
    return [np.asarray(im.get_array()) for im in ax.get_images() if isinstance(im, AxesImage)]


# describe, palette, primitives --------------------------------------------------------------------


def test_describe_golden():
    assert V.describe(torch.arange(6.0).reshape(2, 3)) == "[2, 3] float32  min 0  max 5  mean 2.5"
    assert V.describe(torch.tensor([1, 2, 4])) == "[3] int64  min 1  max 4  mean 2.333"
    assert V.describe(torch.zeros(0, 4)) == "[0, 4] float32  empty"
    assert V.describe(torch.tensor([1.0, float("inf")])).endswith("(1 non-finite)")
    assert V.describe(np.ones((2, 2), dtype=bool)) == "[2, 2] bool  min 1  max 1  mean 1"


def test_class_colors_fixed_and_distinct():
    palette = V.class_colors(12)
    assert palette.shape == (12, 3)
    np.testing.assert_array_equal(palette, V.class_colors(12))
    np.testing.assert_allclose(palette[0], [0.5, 0.5, 0.5])  # background grey
    assert len(np.unique(palette.round(4), axis=0)) == 12
    np.testing.assert_array_equal(V.class_colors(4), palette[:4])  # a class keeps its colour


def test_show_image_puts_pixels_on_unit_squares(sample):
    image = sample[0]
    fig = Figure()
    ax = fig.subplots()
    V.show_image(ax, image)
    (shown,) = ax.get_images()
    assert shown.get_extent() == [0, 128, 128, 0]
    np.testing.assert_allclose(shown.get_array(), image.permute(1, 2, 0).numpy(), atol=1e-6)
    other = Figure().subplots()
    V.show_image(other, image.permute(1, 2, 0).numpy())  # H x W x 3 array
    np.testing.assert_allclose(other.get_images()[0].get_array(), shown.get_array())
    with pytest.raises(ValueError, match="image"):
        V.show_image(ax, torch.zeros(5, 4))


def test_draw_boxes_styles():
    ax = Figure().subplots()
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0]])
    V.draw_boxes(ax, boxes, style="solid")
    V.draw_boxes(ax, boxes[:1], style="dotted")
    V.draw_boxes(ax, boxes, labels=[1, 2], scores=[0.9, 0.25], class_names=["bg", "cat", "dog"],
                 style="faint")
    solid, dotted, faint = (next(c for c in ax.collections if c.get_gid() == g)
                            for g in ("solid", "dotted", "faint"))
    np.testing.assert_allclose(boxes_of(ax, "solid"), boxes.numpy())
    assert count(ax, "dotted") == 1 and count(ax, "faint") == 2
    # dashes: dotted only
    assert solid.get_linestyle()[0][1] is None and dotted.get_linestyle()[0][1] is not None
    assert faint.get_alpha() < 0.5 and solid.get_alpha() is None  # faint is see-through
    assert faint.get_linewidth()[0] < solid.get_linewidth()[0]
    assert [t.get_text() for t in ax.texts] == ["cat 0.90", "dog 0.25"]
    with pytest.raises(ValueError, match="style"):
        V.draw_boxes(ax, boxes, style="dashed")
    with pytest.raises(ValueError, match="labels"):
        V.draw_boxes(ax, boxes, labels=[1])


def test_draw_masks_overlays_exactly_the_mask_pixels():
    masks = torch.zeros(2, 1, 6, 8)
    masks[0, 0, 1:3, 2:5] = 0.9  # probabilities: > 0.5 counts
    masks[1, 0, 4:, :] = 0.4  # below the threshold: not drawn
    ax = Figure().subplots()
    V.draw_masks(ax, masks, colors=["red", "blue"], alpha=0.45)
    overlay = ax.get_images()[0].get_array()  # [H, W, 4]
    expected_alpha = np.zeros((6, 8))
    expected_alpha[1:3, 2:5] = 0.45
    np.testing.assert_allclose(overlay[..., 3], expected_alpha)
    np.testing.assert_allclose(overlay[1, 2, :3], [1, 0, 0])
    with pytest.raises(ValueError, match="masks"):
        V.draw_masks(ax, torch.zeros(6, 8))


# Anchors ------------------------------------------------------------------------------------------


def test_draw_cell_anchors_every_anchor_of_one_centre(trace):
    fig = V.draw_cell_anchors(trace)
    (ax,) = visible_axes(fig)
    drawn = boxes_of(ax, "dotted")
    config = shapes()  # the shipped model's (tests/test_shipped_model.py)
    per_cell = sum(len(sizes) * len(ratios)
                   for sizes, ratios in zip(config.anchor_sizes, config.aspect_ratios))
    assert len(drawn) == per_cell == 30  # 5 levels x 2 sizes x 3 ratios
    centres = (drawn[:, :2] + drawn[:, 2:]) / 2
    np.testing.assert_allclose(centres, np.tile([64.0, 64.0], (per_cell, 1)))  # the cell under the centre
    cell = torch.cat([a[i] for a, i in zip(trace.anchors, V.cell_anchor_indices(trace))])
    assert same_rows(drawn, cell.numpy())
    # ... and they are the trace's own anchors: every drawn box is one of them
    all_anchors = torch.cat(trace.anchors).numpy()
    assert all((np.abs(all_anchors - box).max(axis=1) < 1e-4).any() for box in drawn)
    assert len(fig.legends[0].get_texts()) == 5
    assert "size 8/12 px, h/w ≈ 0.5/1/2 " in fig.legends[0].get_texts()[0].get_text()


def test_draw_anchor_labels_counts(training_trace, trace):
    labels = training_trace.rpn.anchor_labels[0]
    positive, negative, ignored = (int((labels == v).sum()) for v in (1, BACKGROUND_LABEL, IGNORE))
    fig = V.draw_anchor_labels(training_trace, max_negatives=100)
    (ax,) = visible_axes(fig)
    title = ax.get_title()
    assert f"{positive} positive" in title and f"{negative} negative" in title
    assert f"{ignored} ignored" in title
    anchors = torch.cat(training_trace.anchors)
    assert same_rows(boxes_of(ax, "solid"), anchors[labels == 1].numpy())
    assert count(ax, "faint") == min(100, negative) and count(ax, "dotted") == ignored
    assert count(ax, "ground truth") == len(training_trace.targets[0]["boxes"])

    sampled = V.draw_anchor_labels(training_trace, sampled_only=True)
    (ax,) = visible_axes(sampled)
    assert count(ax, "solid") == len(training_trace.rpn.sampled_positive[0])
    assert count(ax, "faint") == len(training_trace.rpn.sampled_negative[0])
    with pytest.raises(ValueError, match="training trace"):
        V.draw_anchor_labels(trace)


def test_names_and_colours():
    assert [V.level_name(k) for k in range(5)] == list(V.LEVEL_NAMES) == ["P2", "P3", "P4", "P5", "P6"]
    assert V.level_name(7) == "level 7" and V.level_colour(0) != V.level_colour(1)
    assert V.class_name(1, ["bg", "cat"]) == "cat" and V.class_name(5, ["bg", "cat"]) == "class 5"
    assert V.class_name(5, None, unnamed="{label}") == "5"
    colours = V.score_colours(torch.tensor([0.0, 0.5, 1.0]), fade=True)
    assert len(colours) == 3 and colours[0][3] == pytest.approx(0.3) and colours[2][3] == pytest.approx(1.0)
    np.testing.assert_allclose(colours[2][:3], V.score_scale().to_rgba(1.0)[:3])


def test_widen_view_takes_in_boxes():
    ax = V.show_image(Figure().subplots(), torch.zeros(3, 10, 20))
    V.widen_view(ax, torch.tensor([[-5.0, 2.0, 4.0, 30.0]]), margin=1.0)
    assert ax.get_xlim() == (-6.0, 21.0) and ax.get_ylim() == (31.0, -1.0)  # y still points down


def test_anchor_objectness_is_in_anchor_order(trace):
    # The RPN's own pre-NMS candidates carry their anchor index and score: both must agree.
    scores = V.anchor_objectness(trace)
    assert scores.shape == (len(torch.cat(trace.anchors)),)
    torch.testing.assert_close(scores[trace.rpn.pre_nms_anchor_index[0]], trace.rpn.pre_nms_scores[0])


def test_draw_refinements_pairs_anchor_and_refined_box(trace):
    fig = V.draw_refinements(trace, top_k=20)
    (ax,) = visible_axes(fig)
    top = V.anchor_objectness(trace).topk(20).indices
    np.testing.assert_allclose(boxes_of(ax, "dotted"), torch.cat(trace.anchors)[top].numpy(), atol=1e-4)
    np.testing.assert_allclose(boxes_of(ax, "solid"), trace.rpn.decoded_boxes[0, top].numpy(), atol=1e-4)
    (lines,) = [c for c in ax.collections if not isinstance(c, PatchCollection)]
    assert len(lines.get_segments()) == 20


def test_draw_top_objectness_and_heatmaps(trace):
    fig = V.draw_top_objectness(trace, top_k=50)
    (ax,) = visible_axes(fig)
    best = V.anchor_objectness(trace).topk(50).indices
    assert same_rows(boxes_of(ax, "dotted"), torch.cat(trace.anchors)[best].numpy())

    fig = V.draw_objectness_heatmaps(trace)
    panels = visible_axes(fig)
    assert len(panels) == 1 + len(trace.rpn.objectness)
    for ax, objectness in zip(panels[1:], trace.rpn.objectness):
        (heat,) = images_of(ax)
        np.testing.assert_allclose(heat, objectness[0].sigmoid().amax(dim=0).numpy(), atol=1e-6)
    assert panels[1].get_title().startswith("P2: 32×32 cells, stride 4")


# NMS and proposals --------------------------------------------------------------------------------


def test_nms_outcome_partitions_the_candidates(trace):
    rpn = trace.rpn
    outcome = V.rpn_nms_outcome(trace)
    total = len(rpn.pre_nms_boxes[0])
    stacked = torch.stack([outcome.kept, outcome.cut, outcome.suppressed])  # [3, T]
    assert stacked.shape == (3, total)
    assert torch.equal(stacked.sum(dim=0), torch.ones(total, dtype=torch.int64))  # one outcome each
    assert torch.equal(torch.where(outcome.kept)[0], rpn.nms_keep[0].sort().values)
    assert torch.equal(torch.where(~outcome.suppressed)[0], rpn.nms_survivors[0].sort().values)
    survivors, kept = len(rpn.nms_survivors[0]), len(rpn.nms_keep[0])
    assert outcome.counts() == {"kept": kept, "cut": survivors - kept, "suppressed": total - survivors}
    # by hand: 5 candidates, NMS keeps 3 of them (best first), the top-2 lets 2 through
    small = V.nms_outcome(5, torch.tensor([3, 0, 4]), torch.tensor([3, 0]))
    assert small.kept.tolist() == [True, False, False, True, False]
    assert small.cut.tolist() == [False, False, False, False, True]
    assert small.suppressed.tolist() == [False, True, True, False, False]
    assert small.where(torch.tensor([True, True, False, False, True])).counts() == {"kept": 1, "cut": 1,
                                                                                     "suppressed": 1}


def test_draw_nms_tells_suppressed_from_cut(trace):
    fig = V.draw_nms(trace)
    before, after = visible_axes(fig)
    rpn = trace.rpn
    total, survivors, kept = len(rpn.pre_nms_boxes[0]), len(rpn.nms_survivors[0]), len(rpn.nms_keep[0])
    assert kept < survivors < total  # this image has both: boxes NMS suppressed, boxes the top-k cut
    assert count(before, "solid") == total and f"{total} boxes" in before.get_title()
    assert count(after, "solid") == kept and f"{kept} proposals" in after.get_title()
    assert count(after, "dotted") == survivors - kept and count(after, "faint") == total - survivors
    assert same_rows(boxes_of(after, "solid"), trace.rpn.proposals[0].numpy())
    cut = rpn.nms_survivors[0][kept:]
    assert same_rows(boxes_of(after, "dotted"), rpn.pre_nms_boxes[0][cut].numpy())
    assert [t.get_text() for t in after.get_legend().get_texts()] == [
        f"kept: {kept}", f"survived NMS, cut by the top-k: {survivors - kept}",
        f"suppressed by NMS: {total - survivors}"]


def test_draw_nms_on_limits_each_outcome_to_its_best(trace):
    ax = V.show_image(Figure().subplots(), trace.image(0))
    assert V.draw_nms_on(ax, trace, limit=10, legend=None) is ax
    rpn = trace.rpn
    assert count(ax, "solid") == count(ax, "dotted") == count(ax, "faint") == 10
    best_cut = rpn.nms_survivors[0][len(rpn.nms_keep[0]):][:10]  # survivors are ranked best first
    assert same_rows(boxes_of(ax, "dotted"), rpn.pre_nms_boxes[0][best_cut].numpy())
    assert ax.get_legend() is None


def test_draw_proposals_top_k(trace):
    fig = V.draw_proposals(trace, top_k=50)
    (ax,) = visible_axes(fig)
    best = trace.rpn.proposal_scores[0].topk(50).indices
    assert same_rows(boxes_of(ax, "solid"), trace.rpn.proposals[0][best].numpy())
    per_level = [int(t.get_text().split(": ")[1]) for t in fig.legends[0].get_texts()]
    assert sum(per_level) == 50


# Heads --------------------------------------------------------------------------------------------


def test_draw_roi_refinement_uses_the_best_class(trace, class_names):
    fig = V.draw_roi_refinement(trace, top_k=20, class_names=class_names)
    (ax,) = visible_axes(fig)
    scores = trace.heads.class_scores[0]
    best_score, best_class = scores[:, 1:].max(dim=1)
    top = best_score.topk(20).indices
    np.testing.assert_allclose(boxes_of(ax, "dotted"), trace.heads.proposals[0][top].numpy(), atol=1e-4)
    np.testing.assert_allclose(boxes_of(ax, "solid"),
                               trace.heads.refined_boxes[0][top, best_class[top] + 1].numpy(), atol=1e-4)
    best = int(top[0])
    assert ax.texts[0].get_text() == f"{class_names[int(best_class[best]) + 1]} {float(best_score[best]):.2f}"


def test_draw_class_nms_per_class_panels(trace, class_names):
    fig = V.draw_class_nms(trace, class_names=class_names)
    candidates, detections = trace.heads.pre_nms[0], trace.heads.detections[0]
    survived = torch.zeros(len(candidates["scores"]), dtype=torch.bool)
    survived[trace.heads.nms_survivors[0]] = True
    classes = candidates["labels"].unique().tolist()
    panels = visible_axes(fig)
    assert len(panels) == len(classes)
    for ax, label in zip(panels, classes):
        ours = candidates["labels"] == label
        kept = int((detections["labels"] == label).sum())
        suppressed, cut = int((ours & ~survived).sum()), int((ours & survived).sum()) - kept
        assert count(ax, "solid") == kept and count(ax, "faint") == suppressed and count(ax, "dotted") == cut
        assert same_rows(boxes_of(ax, "solid"), detections["boxes"][detections["labels"] == label].numpy())
        assert ax.get_title() == (f"{class_names[label]}: {int(ours.sum())} candidates → {kept} kept\n"
                                  f"{suppressed} suppressed, {cut} cut by the top-k")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["kept", "survived NMS, cut by the top-k",
                                                                  "suppressed by NMS"]
    with pytest.raises(ValueError, match="inference trace"):
        V.draw_class_nms(without_inference_fields(trace))


def test_class_nms_outcome_is_the_heads_record(trace):
    outcome = V.class_nms_outcome(trace)
    heads = trace.heads
    assert torch.equal(torch.where(outcome.kept)[0], heads.detection_candidates[0].sort().values)
    assert torch.equal(torch.where(~outcome.suppressed)[0], heads.nms_survivors[0].sort().values)
    # each detection is its candidate: same box, label and score
    kept = heads.detection_candidates[0]
    torch.testing.assert_close(heads.pre_nms[0]["boxes"][kept], heads.detections[0]["boxes"])
    assert torch.equal(heads.pre_nms[0]["labels"][kept], heads.detections[0]["labels"])


def test_draw_class_nms_on_every_class_above_a_score(trace, class_names):
    candidates = trace.heads.pre_nms[0]
    ax = V.show_image(Figure().subplots(), trace.image(0))
    V.draw_class_nms_on(ax, trace, class_names=class_names, min_score=0.5)
    passing = candidates["scores"] >= 0.5
    counts = V.class_nms_outcome(trace).where(passing).counts()
    assert (count(ax, "solid"), count(ax, "dotted"), count(ax, "faint")) == (counts["kept"], counts["cut"],
                                                                              counts["suppressed"])
    kept = trace.heads.detections[0]["scores"] >= 0.5
    expected = [f"{class_names[int(label)]} {float(score):.2f}" for label, score in
                zip(trace.heads.detections[0]["labels"][kept], trace.heads.detections[0]["scores"][kept])]
    assert sorted(t.get_text() for t in ax.texts) == sorted(expected)


def without_inference_fields(trace):
    """A shallow copy of an inference trace that lacks the per-class NMS record (the error path)."""
    broken = copy.copy(trace)
    broken.heads = copy.copy(trace.heads)
    broken.heads.pre_nms = None
    return broken


def test_draw_mask_logits_shows_each_detections_own_logits(trace, class_names):
    fig = V.draw_mask_logits(trace, detections=[0, 2], class_names=class_names)
    panels = visible_axes(fig)
    assert len(panels) == 2 * 3  # rows per detection: logits | probability | pasted
    for row, d in zip((panels[:3], panels[3:]), (0, 2)):
        logits = trace.heads.detection_mask_logits[0][d]
        (shown,) = images_of(row[0])
        np.testing.assert_allclose(shown, logits.numpy())
        low, high = row[0].get_images()[0].get_clim()
        assert low == -high and high == pytest.approx(float(logits.abs().max()))  # diverging, centred on 0
        np.testing.assert_allclose(images_of(row[1])[0], logits.sigmoid().numpy(), atol=1e-6)
        overlay = images_of(row[2])[1]  # the image, then the pasted mask
        pasted = trace.detections[0]["masks"][d, 0].numpy() > 0.5
        np.testing.assert_array_equal(overlay[..., 3] > 0, pasted)
        assert class_names[int(trace.detections[0]["labels"][d])] in row[0].get_ylabel()
    with pytest.raises(ValueError, match="detection index"):
        V.draw_mask_logits(trace, detections=[99])


def test_draw_mask_targets_beside_the_target_class_logits(training_trace, class_names):
    heads = training_trace.heads
    fig = V.draw_mask_targets(training_trace, class_names=class_names, max_rows=3)
    panels = visible_axes(fig)
    assert len(panels) == 3 * 4
    for k in range(3):
        target_panel, logits_panel = panels[4 * k], panels[4 * k + 1]
        np.testing.assert_array_equal(images_of(target_panel)[0], heads.mask_targets[0][k].numpy())
        label = int(heads.sampled_labels[0][heads.mask_rois[0][k]])
        np.testing.assert_allclose(images_of(logits_panel)[0], heads.mask_logits[k, label].numpy())
    # draw_mask_logits on a training trace shows the same thing
    assert len(visible_axes(V.draw_mask_logits(training_trace, max_rows=3))) == 3 * 4


def test_draw_activations_rows_and_channels(trace):
    fig = V.draw_activations(trace, which="C", channels=8)
    rows = fig.subfigs
    assert len(rows) == 4
    for row, stage, stride in zip(rows, trace.stages, (4, 8, 16, 32)):
        panels = [ax for ax in row.get_axes() if ax.get_visible()]
        assert len(panels) == 8
        count_, height, width = stage.shape[1:]
        assert f"[{count_}, {height}×{width}], stride {stride}" in row.get_suptitle()
        best = int(stage[0].mean(dim=(1, 2)).argmax())
        np.testing.assert_allclose(images_of(panels[0])[0], stage[0, best].numpy())
    assert len(V.draw_activations(trace, which="P", channels=4).subfigs) == 5
    with pytest.raises(ValueError, match="which"):
        V.draw_activations(trace, which="Q")


# Weights ------------------------------------------------------------------------------------------


def test_weight_statistics_golden_and_flags():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net[0].bias.zero_()
        net[1].weight.fill_(0.5)
        net[1].weight[0, 0] = float("inf")
        net[1].bias.copy_(torch.tensor([2e3, 0.0]))
        net[2].weight.fill_(0.1)  # constant but not zero: dead (std 0)
        net[2].bias.fill_(0.3)  # a single value: no spread to judge, not dead
    rows = {row["name"]: row for row in V.weight_statistics(net)}
    first = rows["0.weight"]
    assert first["shape"] == (2, 2)
    assert (first["min"], first["max"], first["mean"]) == (1.0, 4.0, 2.5)
    assert first["std"] == pytest.approx(np.sqrt(1.25)) and first["flags"] == []
    assert rows["0.bias"]["flags"] == ["dead"]
    assert rows["1.weight"]["flags"] == ["overflow"] and rows["1.bias"]["flags"] == ["overflow"]
    assert rows["2.weight"]["flags"] == ["dead"] and rows["2.bias"]["flags"] == []

    text = V.format_weight_table(list(rows.values()))
    lines = text.splitlines()
    assert lines[0].split() == ["name", "shape", "min", "max", "mean", "std", "flags"]
    assert len(lines) == 2 + len(rows)
    assert lines[2].split()[:5] == ["0.weight", "2×2", "1", "4", "2.5"]
    assert lines[3].split()[-1] == "dead"

    fig = V.draw_weight_table(list(rows.values()))
    (table,) = visible_axes(fig)[0].tables
    cells = table.get_celld()
    assert cells[(1, 0)].get_text().get_text() == "0.weight"
    assert cells[(2, 6)].get_text().get_text() == "dead"
    assert cells[(2, 0)].get_facecolor() != cells[(1, 0)].get_facecolor()  # flagged rows stand out
    assert "6 tensors; 4 flagged" in visible_axes(fig)[0].get_title()


def test_weight_statistics_of_the_shipped_model(model):
    rows = V.weight_statistics(model)
    floating_buffers = [b for b in model.buffers() if b.is_floating_point()]
    assert len(rows) == len(list(model.parameters())) + len(floating_buffers)
    assert not any(row["flags"] for row in rows)  # a trained, healthy model
    conv1 = next(row for row in rows if row["name"] == "backbone.body.conv1.weight")
    weight = model.backbone.body.conv1.weight.detach().double()
    assert conv1["std"] == pytest.approx(float(weight.std(unbiased=False)))


def test_draw_weight_histograms_whole_tensors(model):
    layers = V.weight_layers(model)
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    assert len(layers) == sum(isinstance(m, kinds) for m in model.modules())
    fig = V.draw_weight_histograms(model)
    panels = visible_axes(fig)
    assert len(panels) == len(layers)
    for ax, (name, weight) in zip(panels, layers):
        assert ax.get_title().splitlines()[0] == name
        (stairs,) = ax.patches
        assert stairs.get_data().values.sum() == weight.numel()  # every value, not a slice
    assert len(visible_axes(V.draw_weight_histograms(model, max_layers=5))) == 5


# Samples, matching, IoU grid, PR curve ------------------------------------------------------------


def test_draw_top_masks_union_per_class(class_names):
    image, target = ShapesDataset(8, seed=0)[1]
    fig = V.draw_top_masks(image, target, class_names, limit=4)
    panels = visible_axes(fig)
    labels = target["labels"]
    classes, counts = labels.unique(return_counts=True)
    assert len(panels) == 1 + len(classes)
    # most frequent class first
    assert panels[1].get_title().startswith(class_names[int(classes[counts.argmax()])])
    for ax in panels[1:]:
        name = ax.get_title().split(" (")[0]
        label = class_names.index(name)
        union = (target["masks"][labels == label] > 0).any(dim=0).numpy()
        np.testing.assert_array_equal(images_of(ax)[0], union)


def hand_made_scene():
    """Three objects, five predictions (``tests/test_evaluation_matching.py`` matches them by hand)."""
    gt_boxes = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    gt_labels = torch.tensor([1, 1, 2])
    pred_boxes = torch.tensor([[0.0, 0, 10, 8], [0, 0, 10, 6], [40, 0, 50, 10], [40, 0, 50, 4],
                               [21, 0, 30, 10]])
    pred_labels = torch.tensor([1, 1, 1, 2, 1])
    pred_scores = torch.tensor([0.9, 0.95, 0.8, 0.7, 0.3])
    return gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores


def test_draw_matches_marks_matches_misses_false_positives():
    gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores = hand_made_scene()
    fig = V.draw_matches(torch.ones(3, 20, 60), gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores,
                         class_names=["bg", "a", "b"])
    (ax,) = visible_axes(fig)
    assert ax.get_title().startswith("2 matched, 1 missed, 3 false positives")
    np.testing.assert_allclose(boxes_of(ax, "matched ground truth"), gt_boxes[[0, 1]].numpy())
    np.testing.assert_allclose(boxes_of(ax, "missed"), gt_boxes[[2]].numpy())
    solid = [c for c in ax.collections if c.get_gid() == "solid"]  # matched predictions, then false positives
    assert [len(c.get_paths()) for c in solid] == [2, 3]
    green, orange = (np.asarray(c.get_edgecolor()[0][:3]) for c in solid)
    assert not np.allclose(green, orange)


def test_draw_iou_grid_annotations_are_box_iou():
    gt_boxes, gt_labels, pred_boxes, pred_labels, _ = hand_made_scene()
    fig = V.draw_iou_grid(gt_boxes, pred_boxes, gt_labels, pred_labels, class_names=["bg", "a", "b"])
    (ax,) = visible_axes(fig)
    ious = box_iou(gt_boxes, pred_boxes)
    texts = [float(t.get_text()) for t in ax.texts]
    np.testing.assert_allclose(np.reshape(texts, ious.shape), ious.numpy(), atol=0.005)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gt 0: a", "gt 1: a", "gt 2: b"]


def test_draw_pr_curve_figure_or_axes():
    recall, precision = np.array([0.25, 0.5, 0.5, 0.75]), np.array([1.0, 1.0, 0.67, 0.75])
    interpolated = np.where(np.linspace(0, 1, 101) <= 0.75, 1.0, 0.0)
    fig = V.draw_pr_curve(recall, precision, interpolated=interpolated, label="square")
    assert isinstance(fig, Figure)
    (ax,) = visible_axes(fig)
    raw, envelope = ax.get_lines()
    np.testing.assert_allclose(raw.get_xdata(), recall)
    np.testing.assert_allclose(raw.get_ydata(), precision)
    assert len(envelope.get_xdata()) == 101
    assert f"AP {interpolated.mean():.3f}" in ax.get_legend().get_texts()[1].get_text()
    given = Figure().subplots()
    assert V.draw_pr_curve(recall, precision, ax=given) is given


# Figures: all Figure objects, none kept by pyplot, nothing closed that we did not open ------------


def test_every_drawing_is_a_figure_pyplot_does_not_track(trace, training_trace, model, sample, class_names):
    image, target = sample
    mine = plt.figure()  # the caller's own pyplot figure must survive
    before = plt.get_fignums()
    detections = trace.detections[0]
    figures = [
        V.draw_cell_anchors(trace), V.draw_anchor_labels(training_trace), V.draw_refinements(trace),
        V.draw_top_objectness(trace), V.draw_objectness_heatmaps(trace), V.draw_nms(trace),
        V.draw_proposals(trace),
        V.draw_roi_refinement(trace), V.draw_class_nms(trace), V.draw_mask_logits(trace),
        V.draw_mask_targets(training_trace), V.draw_activations(trace, "C"), V.draw_activations(trace, "P"),
        V.draw_weight_table(V.weight_statistics(model)[:10]), V.draw_weight_histograms(model, max_layers=4),
        V.draw_top_masks(image, target, class_names),
        V.draw_matches(image, target["boxes"], target["labels"], detections["boxes"], detections["labels"],
                       detections["scores"]),
        V.draw_iou_grid(target["boxes"], detections["boxes"]), V.draw_pr_curve([0.5, 1.0], [1.0, 0.5]),
    ]
    assert all(isinstance(fig, Figure) for fig in figures)
    assert plt.get_fignums() == before and plt.fignum_exists(mine.number)
    for fig in figures:
        assert fig.get_figwidth() <= 10.0
    plt.close(mine)


@pytest.mark.parametrize("draw", ["draw_nms", "draw_mask_logits", "draw_class_nms", "draw_cell_anchors"])
def test_drawings_render(trace, draw, tmp_path):
    """Drawn for real (layout, text, colour bars): no warning (e.g. about the layout), a PNG comes out."""
    fig = getattr(V, draw)(trace)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(tmp_path / "figure.png", dpi=50)
    assert (tmp_path / "figure.png").stat().st_size > 1000
