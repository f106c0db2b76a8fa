"""The config switches behind the paper's ablations (issue 18): RoIWarp (Table 2c), the MLP mask head
(Table 2e) and the box-only model (Table 3). Each is off by default, so the shipped model and the
presets are unchanged; each changes what it says and nothing else."""
from __future__ import annotations

import math

import pytest
import torch

from maskrcnn_edu import roi_ops
from maskrcnn_edu.config import Config, shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.evaluation.coco import coco_evaluate
from maskrcnn_edu.mask_heads import MLPMaskHead, MLPMaskPredictor
from maskrcnn_edu.model import MaskRCNN, _operations
from maskrcnn_edu.roi_heads import MaskHead, MaskPredictor
from maskrcnn_edu.weights import save_checkpoint


def features(seed: int = 0, images: int = 2, channels: int = 3, height: int = 12, width: int = 14):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(images, channels, height, width, generator=generator)


def quantized(rois: torch.Tensor, scale: float) -> torch.Tensor:
    """The corners rounded to whole feature cells as C's round does (halves away from zero), one number
    at a time in plain Python: an independent statement of RoIPool's first quantization."""
    def rounded(value: float) -> float:
        return math.copysign(math.floor(abs(value * scale) + 0.5), value) / scale

    return torch.tensor([[row[0], *map(rounded, row[1:])] for row in rois.tolist()])


# RoIWarp -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_warp_of_a_box_on_the_grid_is_roi_align_of_it(aligned):
    x = features()
    # stride 4: every corner is a whole cell (8 px = cell 2, 36 px = cell 9, ...)
    rois = torch.tensor([[0, 8.0, 4.0, 36.0, 28.0], [1, 0.0, 12.0, 20.0, 44.0]])
    warped = roi_ops.roi_warp(x, rois, (3, 4), 0.25, 2, aligned)
    assert torch.equal(warped, roi_ops.roi_align(x, rois, (3, 4), 0.25, 2, aligned))


def test_roi_warp_of_a_box_off_the_grid_is_roi_align_of_the_rounded_box():
    x = features()
    # On stride 4, x0 = 9.5 px is 2.375 cells -> cell 2 (8 px); y0 = 6.1 px, 1.525 -> cell 2 (8 px);
    # x1 = 41.9 px, 10.475 -> cell 10 (40 px); y1 = 30 px is 7.5 cells, a half: away from zero, 8 (32 px).
    box = torch.tensor([[0, 9.5, 6.1, 41.9, 30.0]])
    by_hand = torch.tensor([[0, 8.0, 8.0, 40.0, 32.0]])
    warped = roi_ops.roi_warp(x, box, 7, 0.25, 2, False)
    assert torch.equal(warped, roi_ops.roi_align(x, by_hand, 7, 0.25, 2, False))
    # ... which is not RoIAlign of the box itself: the rounding moved what is read
    assert not torch.allclose(warped, roi_ops.roi_align(x, box, 7, 0.25, 2, False))


@pytest.mark.parametrize("sampling_ratio, aligned", [(2, False), (2, True), (-1, False), (-1, True)])
def test_roi_warp_is_roi_align_of_the_rounded_boxes_for_any_boxes(sampling_ratio, aligned):
    generator = torch.Generator().manual_seed(1)
    x = features(seed=2)
    corners = torch.rand(40, 2, generator=generator) * torch.tensor([50.0, 40.0])
    sizes = torch.rand(40, 2, generator=generator) * 30 + 1
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=generator).float(), corners, corners + sizes], 1)
    warped = roi_ops.roi_warp(x, rois, (5, 6), 0.25, sampling_ratio, aligned)
    expected = roi_ops.roi_align(x, quantized(rois, 0.25), (5, 6), 0.25, sampling_ratio, aligned)
    torch.testing.assert_close(warped, expected, rtol=0, atol=1e-6)


def test_roi_warp_sends_the_gradient_to_the_cells_of_the_rounded_box_and_none_to_the_box():
    x = features(images=1, channels=2).requires_grad_()
    # Rounded to x 3..5, y 3..7: its sampling points (3 x 3 bins, 2 x 2 points) lie in x 3.17..4.83,
    # y 3.33..6.67, so they read columns 3..5 and rows 3..7. The box as it is would also read column 2
    # (its first points sit at x = 2.83).
    box = torch.tensor([[0, 2.6, 3.4, 5.4, 7.2]], requires_grad=True)
    roi_ops.roi_warp(x, box, 3, 1.0, 2, False).sum().backward()
    reached = (x.grad[0, 0] != 0).nonzero()
    assert reached[:, 0].min() == 3 and reached[:, 0].max() == 7  # rows
    assert reached[:, 1].min() == 3 and reached[:, 1].max() == 5  # columns
    assert box.grad is None or torch.count_nonzero(box.grad) == 0  # rounding has no gradient
    x.grad = None
    roi_ops.roi_align(x, box.detach(), 3, 1.0, 2, False).sum().backward()
    assert (x.grad[0, 0] != 0).nonzero()[:, 1].min() == 2


def test_roi_op_warp_hands_the_heads_roi_warp_with_either_kernel_setting():
    for ops in ("readable", "torchvision"):
        _nms, head_op, align = _operations(shapes(roi_op="warp", ops=ops))
        assert head_op is roi_ops.roi_warp
        assert align is not roi_ops.roi_warp  # the mask targets are still cut with RoIAlign
    model = MaskRCNN(shapes(roi_op="warp"))
    assert model.roi_heads.box_pool.op is roi_ops.roi_warp
    assert model.roi_heads.mask_pool.op is roi_ops.roi_warp


# The MLP mask head -------------------------------------------------------------------------------------


def test_the_mlp_mask_head_gives_every_class_a_28_by_28_mask():
    head, predictor = MLPMaskHead(64, 14, (1024, 1024)), MLPMaskPredictor(1024, 4, 28)
    logits = predictor(head(torch.randn(5, 64, 14, 14)))
    assert logits.shape == (5, 4, 28, 28)


def test_the_mlp_mask_heads_parameters_counted_by_hand():
    model = MaskRCNN(shapes(mask_head="mlp"))  # 64 FPN channels, 4 classes, the paper's fc 1024 -> 1024
    head, predictor = model.roi_heads.mask_head, model.roi_heads.mask_predictor
    assert isinstance(head, MLPMaskHead) and isinstance(predictor, MLPMaskPredictor)
    fc1 = 64 * 14 * 14 * 1024 + 1024  # the flattened 14 x 14 RoI to 1024
    fc2 = 1024 * 1024 + 1024
    logits = 1024 * 4 * 28 * 28 + 4 * 28 * 28  # to every class's 28 x 28 mask
    assert sum(p.numel() for p in head.parameters()) == fc1 + fc2
    assert sum(p.numel() for p in predictor.parameters()) == logits == 3_214_400


def test_an_mlp_output_pixel_reads_every_input_cell_where_a_conv_reads_its_neighbourhood():
    """What Table 2(e) is about: the MLP gives up the spatial layout, the FCN keeps it."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(MLPMaskHead(2, 14, (32,)), MLPMaskPredictor(32, 2, 28))
    fcn = torch.nn.Sequential(MaskHead(2, (8,)), MaskPredictor(8, 8, 2))
    for layer in fcn.modules():  # large biases keep every ReLU open: what a pixel reads is the question
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.constant_(layer.bias, 10.0)
    reached = {}
    for name, head in (("mlp", mlp), ("fcn", fcn)):
        x = torch.randn(1, 2, 14, 14, requires_grad=True)
        head(x)[0, 1, 0, 0].backward()  # one output pixel, in the corner
        reached[name] = (x.grad[0].abs().sum(0) != 0).nonzero().tolist()
    assert len(reached["mlp"]) == 14 * 14
    # 28 -> 14: output pixel (0, 0) comes from cell (0, 0), whose 3x3 conv reads cells 0..1 x 0..1
    assert reached["fcn"] == [[0, 0], [0, 1], [1, 0], [1, 1]]


def targets_and_images(count: int = 2):
    dataset = ShapesDataset(count, seed=5)
    samples = [dataset[i] for i in range(count)]
    return [image for image, _ in samples], [target for _, target in samples]


def one_step(model: MaskRCNN) -> dict:
    """One AdamW step on two Shapes images -> the losses (before the step)."""
    images, targets = targets_and_images()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = model(images, targets)
    sum(losses.values()).backward()
    optimizer.step()
    return losses


def test_a_model_with_the_mlp_mask_head_trains_a_step_and_detects_masks():
    torch.manual_seed(0)
    model = MaskRCNN(shapes(mask_head="mlp"))
    before = [p.detach().clone() for p in model.roi_heads.mask_head.parameters()]
    losses = one_step(model)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
                           "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_mask"] > 0
    after = list(model.roi_heads.mask_head.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # the mask loss reached every fc
    images, _ = targets_and_images(1)
    detections = model.eval()(images)[0]
    assert detections["masks"].shape[1:] == (1, *images[0].shape[-2:])


# Box only: Table 3 ---------------------------------------------------------------------------------


def test_a_box_only_model_has_no_mask_branch_no_mask_loss_and_its_box_head_trains():
    torch.manual_seed(0)
    model = MaskRCNN(shapes(train_mask_branch=False))
    assert model.roi_heads.mask_head is None and model.roi_heads.mask_predictor is None
    assert not any(name.startswith(("roi_heads.mask_head", "roi_heads.mask_predictor"))
                   for name in model.state_dict())
    box_weights = model.roi_heads.box_predictor.bbox_pred.weight.detach().clone()
    losses = one_step(model)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert losses["loss_box_reg"] > 0
    assert not torch.equal(box_weights, model.roi_heads.box_predictor.bbox_pred.weight)
    images, _ = targets_and_images(1)
    assert set(model.eval()(images)[0]) == {"boxes", "labels", "scores"}
    trace = model.trace(images[0])
    assert trace.heads.mask_logits is None
    with pytest.raises(ValueError, match="no mask branch"):
        trace.lineage(0)


def test_coco_evaluate_scores_a_box_only_model_on_boxes_and_a_masked_one_on_both():
    dataset = ShapesDataset(2, seed=3)
    for train_mask_branch, kinds in ((False, {"bbox"}), (True, {"bbox", "segm"})):
        torch.manual_seed(0)
        model = MaskRCNN(shapes(train_mask_branch=train_mask_branch, box_score_thresh=0.0))
        metrics, results = coco_evaluate(model, dataset, progress=False)
        assert set(metrics) == kinds
        assert results and all(("segmentation" in r) == train_mask_branch for r in results)
        assert metrics["bbox"]["AP"] is not None


# Config and checkpoints ---------------------------------------------------------------------------


def test_the_defaults_are_todays_model():
    for config in (Config(), shapes()):
        assert (config.roi_op, config.mask_head, config.train_mask_branch) == ("align", "fcn", True)
    model = MaskRCNN(shapes())
    assert isinstance(model.roi_heads.mask_head, MaskHead)
    assert isinstance(model.roi_heads.mask_predictor, MaskPredictor)


@pytest.mark.parametrize("changes, message", [
    ({"roi_op": "crop"}, "roi_op"),
    ({"mask_head": "conv"}, "mask_head"),
    ({"train_mask_branch": "no"}, "train_mask_branch"),
    ({"mask_mlp_layers": ()}, "mask_mlp_layers"),
    ({"mask_mlp_layers": (1024, 0)}, "mask_mlp_layers"),
    ({"train_mask_branch": False, "mask_overlap_rescore": True}, "mask_overlap_rescore"),
])
def test_the_config_refuses_what_it_cannot_build(changes, message):
    with pytest.raises(ValueError, match=message):
        shapes(**changes)


@pytest.mark.parametrize("changes", [
    {"roi_op": "warp"}, {"roi_op": "pool"}, {"mask_head": "mlp"},
    {"mask_head": "mlp", "mask_mlp_layers": (64, 32, 16)}, {"train_mask_branch": False},
])
def test_each_switch_round_trips_through_a_checkpoint(tmp_path, changes):
    torch.manual_seed(0)
    model = MaskRCNN(shapes(**changes))
    save_checkpoint(tmp_path / "model.pt", model)
    loaded = MaskRCNN.from_checkpoint(tmp_path / "model.pt")
    assert loaded.config == model.config
    for key, value in changes.items():
        assert getattr(loaded.config, key) == value
    saved, restored = model.state_dict(), loaded.state_dict()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    assert type(loaded.roi_heads.mask_head) is type(model.roi_heads.mask_head)
