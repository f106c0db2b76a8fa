"""Chapter 05's loss explorer: driven by setting its controls' ``.value``, as a reader's mouse would."""
import math

import pytest
import torch
import torch.nn.functional as F

from maskrcnn_edu.boxes import box_iou
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.explorers.losses import box_from_sliders, loss_explorer, loss_scene, losses_for_box


@pytest.fixture(scope="module")
def sample():
    return ShapesDataset(4, seed=3)[3]  # a triangle (object 1) partly behind a circle


@pytest.fixture()
def explorer(model, sample):
    return loss_explorer(model, *sample, object_index=1, draw=False)


def move_to(explorer, box):
    x0, y0, x1, y1 = [float(v) for v in box]
    for name, value in zip("xywh", (x0, y0, x1 - x0, y1 - y0)):
        explorer.controls[name].value = value


def test_starts_on_the_proposal_that_overlaps_the_object_best(explorer, model, sample):
    image, target = sample
    proposals = model.trace(image).proposals[0]
    best_iou = box_iou(target["boxes"][1:2], proposals).max().item()
    assert explorer.state.result.iou == pytest.approx(best_iou, abs=2e-3)  # sliders round to 0.1 px
    assert explorer.scene.label == 3 and explorer.scene.class_name == "triangle"


def test_box_on_the_ground_truth_gives_iou_one_and_zero_box_loss(explorer):
    move_to(explorer, explorer.scene.gt_box)
    result = explorer.state.result
    assert result.iou == pytest.approx(1.0, abs=1e-6)
    assert result.box_loss == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(result.predicted_deltas, result.target_deltas, atol=1e-5)
    assert "box IoU 1.000" in explorer.state.caption
    assert "box loss (smooth L1 of the deltas) 0.000" in explorer.state.caption


def test_box_loss_is_smooth_l1_of_the_weighted_deltas(explorer):
    # Shift the ground-truth box right by d pixels: only dx changes, by 10 * d / proposal width.
    proposal_width = float(explorer.scene.proposal[2] - explorer.scene.proposal[0])
    beta = 1 / 9
    for shift in (0.25, 3.0):  # one error inside the quadratic zone (|e| < 1/9), one in the linear one
        move_to(explorer, explorer.scene.gt_box + torch.tensor([shift, 0.0, shift, 0.0]))
        error = 10 * shift / proposal_width
        expected = 0.5 * error**2 / beta if error < beta else error - 0.5 * beta
        assert explorer.state.result.box_loss == pytest.approx(expected, rel=1e-4)


def test_moving_the_box_away_raises_the_box_loss_and_lowers_the_iou(explorer):
    gt = explorer.scene.gt_box
    results = []
    for shift in (0.0, 4.0, 8.0, 16.0):
        move_to(explorer, gt + torch.tensor([shift, shift, shift, shift]))
        results.append(explorer.state.result)
    assert all(a.box_loss < b.box_loss for a, b in zip(results, results[1:]))
    assert all(a.iou > b.iou for a, b in zip(results, results[1:]))


def test_score_sets_the_classification_loss(explorer):
    for score in (0.9, 0.5, 0.05):
        explorer.controls["score"].value = score
        assert explorer.state.result.classification_loss == pytest.approx(-math.log(score), rel=1e-5)
    explorer.controls["score"].value = 1.0
    assert explorer.state.result.classification_loss == pytest.approx(0.0, abs=1e-6)


def test_threshold_changes_the_mask_iou_but_not_the_mask_loss(explorer):
    explorer.controls["mask_threshold"].value = 0.5
    loss, iou = explorer.state.result.mask_loss, explorer.state.result.mask_iou
    explorer.controls["mask_threshold"].value = 0.95
    assert explorer.state.result.mask_loss == pytest.approx(loss, abs=1e-7)
    assert explorer.state.result.mask_iou != pytest.approx(iou, abs=1e-4)
    assert explorer.state.result.pasted_mask.sum() > 0


def test_mask_is_the_model_s_own_class_mask_at_the_box(model, sample, explorer):
    # Put the box on a detection of the inference trace: the explorer's logits must be the ones the
    # model computed for that detection, and the loss their BCE against the cut-out ground truth.
    image, _ = sample
    heads = model.trace(image).heads
    detection = heads.detections[0]
    index = int((detection["labels"] == 3).nonzero()[0])
    box = detection["boxes"][index]
    result = losses_for_box(explorer.scene, box, 0.9, 0.5)
    assert torch.allclose(result.mask_logits, heads.detection_mask_logits[0][index], atol=1e-5)
    expected = F.binary_cross_entropy_with_logits(result.mask_logits, result.mask_target)
    assert result.mask_loss == pytest.approx(expected.item(), rel=1e-6)


def test_a_good_box_has_a_small_mask_loss_and_a_box_off_the_object_a_large_one(explorer):
    move_to(explorer, explorer.scene.gt_box)
    on_object = explorer.state.result
    assert on_object.mask_loss < 0.3 and on_object.mask_iou > 0.8
    move_to(explorer, [90.0, 90.0, 120.0, 120.0])  # empty background at the bottom right
    off_object = explorer.state.result
    assert off_object.iou == 0.0 and off_object.mask_target.max() == 0
    assert off_object.mask_loss != pytest.approx(on_object.mask_loss, abs=1e-3)


def test_the_figure_is_drawn_and_fits_the_column(model, sample):
    explorer = loss_explorer(model, *sample, object_index=1, draw=True)
    width, height = explorer.state.figure.get_size_inches()
    assert width * 80 <= 960
    assert explorer.image.value[:4] == b"\x89PNG"


def test_bad_inputs_name_the_argument(model, sample):
    with pytest.raises(ValueError, match="object_index"):
        loss_scene(model, *sample, object_index=7)
    scene = loss_scene(model, *sample, object_index=0)
    with pytest.raises(ValueError, match="score"):
        losses_for_box(scene, box_from_sliders(10, 10, 20, 20), 0.0, 0.5)
