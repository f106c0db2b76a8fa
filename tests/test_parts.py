"""The model's parts on their own: config, backbones, anchors, matcher, mask pasting, losses."""
import math

import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import paste_masks_in_image

from maskrcnn_edu import losses
from maskrcnn_edu.anchors import AnchorGenerator, cell_anchors
from maskrcnn_edu.backbone import ResNetBody, build_backbone
from maskrcnn_edu.config import Config, coco_r50_fpn, shapes
from maskrcnn_edu.matching import BACKGROUND, IGNORE, BalancedSampler, Matcher
from maskrcnn_edu.masks import paste_masks
from maskrcnn_edu.roi_heads import RoIHeads


def test_config_json_round_trip_and_validation():
    for config in (coco_r50_fpn(), shapes()):
        assert Config.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match=r"Config.ops must be one of .*got 'fast'"):
        Config(ops="fast")
    with pytest.raises(ValueError, match=r"unknown Config fields \['colour'\]"):
        Config.from_dict({"colour": 1})
    with pytest.raises(ValueError, match=r"Config.mask_positives_per_image must be 0 .*got -1"):
        Config(mask_positives_per_image=-1)
    assert coco_r50_fpn().rpn_post_nms_top_n_test == 1000
    assert coco_r50_fpn().box_weights == (10.0, 10.0, 5.0, 5.0)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_backbones_give_five_levels_at_strides_4_to_64(name):
    backbone = build_backbone(Config(backbone=name, fpn_channels=32)).eval()
    with torch.no_grad():
        levels = backbone(torch.rand(1, 3, 128, 192))
    assert [tuple(level.shape[-2:]) for level in levels] == [(128 // s, 192 // s) for s in (4, 8, 16, 32, 64)]
    assert all(level.shape[1] == 32 for level in levels)


def test_freezing_keeps_only_the_top_stages_trainable():
    body = ResNetBody("resnet18")
    body.freeze(2)
    trainable = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}


def test_cell_anchors_and_grid_match_torchvision():
    sizes, ratios = ((32,), (64,)), ((0.5, 1.0, 2.0),) * 2
    theirs = TorchvisionAnchors(sizes, ratios)
    features = [torch.zeros(1, 8, 25, 34), torch.zeros(1, 8, 13, 17)]
    expected = theirs(ImageList(torch.zeros(1, 3, 100, 136), [(100, 130)]), features)[0]
    ours = torch.cat(AnchorGenerator(sizes, ratios)((100, 136), features))
    assert torch.equal(ours, expected)
    # golden: ratio h/w = 2 at size 32 -> w = 32/sqrt(2) = 22.6, h = 45.3, rounded corners
    assert cell_anchors([32], [2.0]).tolist() == [[-11.0, -23.0, 11.0, 23.0]]


@pytest.mark.parametrize("allow_low_quality", [False, True])
def test_matcher_matches_torchvision(allow_low_quality):
    iou = torch.rand(6, 300, generator=torch.Generator().manual_seed(0)) ** 4  # mostly low, a few high
    ours = Matcher(0.7, 0.3, allow_low_quality)(iou)
    theirs = tv_utils.Matcher(0.7, 0.3, allow_low_quality)(iou)
    # torchvision's verdicts are -1 (below the low threshold) and -2 (between); ours are named constants.
    theirs = torch.where(theirs == tv_utils.Matcher.BELOW_LOW_THRESHOLD, BACKGROUND,
                         torch.where(theirs == tv_utils.Matcher.BETWEEN_THRESHOLDS, IGNORE, theirs))
    assert torch.equal(ours, theirs)
    assert (ours == BACKGROUND).any() and (ours == IGNORE).any() and (ours >= 0).any()


def test_matcher_golden_low_quality_rescue():
    iou = torch.tensor([[0.2, 0.5, 0.9], [0.25, 0.1, 0.0]])  # object 1 never reaches 0.3
    assert Matcher(0.7, 0.3)(iou).tolist() == [BACKGROUND, IGNORE, 0]
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou).tolist() == [1, IGNORE, 0]


def test_sampler_balances_and_is_seeded():
    labels = torch.cat([torch.ones(30), torch.zeros(500), -torch.ones(20)])
    pos, neg = BalancedSampler(128, 0.25, torch.Generator().manual_seed(3))([labels])
    assert pos[0].sum() == 30 and neg[0].sum() == 98  # too few positives: negatives fill the batch
    assert (labels[pos[0].bool()] == 1).all() and (labels[neg[0].bool()] == 0).all()
    again = BalancedSampler(128, 0.25, torch.Generator().manual_seed(3))([labels])
    assert torch.equal(neg[0], again[1][0])


def _crowded_heads_step(cap: int, seed: int):
    """One training step of the Shapes RoI heads on 2 objects and 60 proposals jittered around them,
    so that far more RoIs are positive than a mask cap of a few."""
    gen = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[10.0, 12.0, 50.0, 60.0], [70.0, 20.0, 110.0, 90.0]])
    masks = torch.zeros(2, 128, 128)
    masks[0, 12:60, 10:50] = 1
    masks[1, 20:90, 70:110] = 1
    target = {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks}
    proposals = boxes.repeat(30, 1) + torch.randn(60, 4, generator=gen)  # IoU far above 0.5: all positive
    config = shapes(box_positive_fraction=0.5, mask_positives_per_image=cap)
    torch.manual_seed(0)
    heads = RoIHeads(config, config.fpn_channels, generator=torch.Generator().manual_seed(seed))
    features = [torch.randn(1, config.fpn_channels, 128 // s, 128 // s, generator=gen)
                for s in (4, 8, 16, 32)]
    return heads.train_step(features, [proposals], [(128, 128)], [target])


def test_mask_positives_per_image_caps_the_mask_head_not_the_box_head():
    capped, every = _crowded_heads_step(cap=5, seed=1), _crowded_heads_step(cap=0, seed=1)
    # The box head takes every positive, 60 proposals and 2 objects, either way.
    for output in (capped, every):
        assert int((output.sampled_labels[0] > 0).sum()) == 62
    positives = torch.where(capped.sampled_labels[0] > 0)[0]
    chosen = capped.mask_rois[0]
    assert len(chosen) == 5 and chosen.tolist() == sorted(chosen.tolist())
    assert set(chosen.tolist()) <= set(positives.tolist())
    assert capped.mask_logits.shape[0] == 5 and capped.mask_targets[0].shape == (5, 28, 28)
    assert torch.isfinite(capped.losses["loss_mask"])
    assert torch.equal(every.mask_rois[0], torch.where(every.sampled_labels[0] > 0)[0])  # 0: all 62
    # The five are drawn at random from the sampler's generator: repeatable, and another seed differs.
    assert torch.equal(_crowded_heads_step(cap=5, seed=1).mask_rois[0], chosen)
    assert not torch.equal(_crowded_heads_step(cap=5, seed=2).mask_rois[0], chosen)


def test_paste_masks_matches_torchvision():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(12, 1, 28, 28, generator=generator)
    corners = torch.rand(12, 2, 2, generator=generator) * torch.tensor([150.0, 110.0]) - 10
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], 1)
    boxes[0] = torch.tensor([5.0, 5.0, 5.5, 5.2])  # smaller than a pixel
    ours = paste_masks(masks, boxes, (100, 140))
    theirs = paste_masks_in_image(masks, boxes, (100, 140))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert paste_masks(masks[:0], boxes[:0], (100, 140)).shape == (0, 1, 100, 140)


def test_aligned_paste_masks_samples_every_pixel_centre_like_grid_sample():
    generator = torch.Generator().manual_seed(1)
    masks = torch.rand(12, 1, 28, 28, generator=generator)
    corners = torch.rand(12, 2, 2, generator=generator) * torch.tensor([150.0, 110.0]) - 10
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], 1)
    boxes[0] = torch.tensor([5.0, 5.0, 5.5, 5.2])  # smaller than a pixel
    height, width = 100, 140
    # Each pixel centre's place in the box, as grid_sample's [-1, 1] coordinates (align_corners=False):
    # gx [N, W], gy [N, H].
    gx = ((torch.arange(width) + 0.5)[None] - boxes[:, 0:1]) / (boxes[:, 2:3] - boxes[:, 0:1]) * 2 - 1
    gy = ((torch.arange(height) + 0.5)[None] - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]) * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(-1, height, -1), gy[:, :, None].expand(-1, -1, width)], dim=-1)
    expected = torch.nn.functional.grid_sample(masks, grid, align_corners=False, padding_mode="zeros")
    pasted = paste_masks(masks, boxes, (height, width), aligned=True)
    torch.testing.assert_close(pasted, expected, atol=1e-5, rtol=0)


def test_aligned_mask_targets_and_paste_give_ground_truth_back():
    """A Shapes mask cut to 28 x 28 at its own box and pasted back: nearly itself when aligned, and
    visibly less under torchvision's convention (a half-pixel shift, whole-pixel boxes)."""
    from maskrcnn_edu.data import ShapesDataset
    from maskrcnn_edu.masks import mask_targets

    ious = {True: [], False: []}
    for image, target in ShapesDataset(40, seed=3):
        gt, boxes = target["masks"].bool(), target["boxes"]
        objects = torch.arange(len(boxes))
        for aligned in (True, False):
            crops = mask_targets(target["masks"], boxes, objects, 28, aligned=aligned)  # [G, 28, 28]
            pasted = paste_masks(crops[:, None], boxes, tuple(gt.shape[-2:]), aligned=aligned)[:, 0] >= 0.5
            ious[aligned] += ((pasted & gt).flatten(1).sum(1) / (pasted | gt).flatten(1).sum(1)).tolist()
    aligned, unaligned = torch.tensor(ious[True]), torch.tensor(ious[False])
    # A few occluded slivers fit worse.
    assert aligned.mean() > 0.99 and (aligned > 0.95).float().mean() > 0.98
    assert unaligned.mean() < aligned.mean() - 0.03


def test_batch_mask_targets_are_each_images_own(monkeypatch):
    """``RoIHeads.mask_targets`` cuts a whole batch in one RoIAlign call when the masks share a size:
    exactly what one call per image gives (each RoI reads its own image's object), an image without
    objects included; masks of different sizes go image by image."""
    from maskrcnn_edu import roi_heads
    from maskrcnn_edu.data import ShapesDataset
    from maskrcnn_edu.masks import mask_targets
    from maskrcnn_edu.roi_heads import _Sample

    gen = torch.Generator().manual_seed(4)
    heads = RoIHeads(shapes(), shapes().fpn_channels)
    images = [ShapesDataset(3, seed=5)[i][1] for i in range(3)]
    images.insert(1, {"masks": torch.zeros(0, 128, 128), "boxes": torch.zeros(0, 4)})
    sample = _Sample([], [], [], [])
    for target in images:
        count = 5 if len(target["boxes"]) else 0
        corners = torch.rand(count, 2, 2, generator=gen) * 120
        sample.rois.append(torch.cat([corners.min(1).values, corners.max(1).values + 4], 1))
        sample.objects.append(torch.randint(max(1, len(target["boxes"])), (count,), generator=gen))
    positive = [torch.arange(len(r)) for r in sample.rois]
    expected = [mask_targets(t["masks"], r, o, 28, aligned=True)
                for t, r, o in zip(images, sample.rois, sample.objects)]
    calls = []
    monkeypatch.setattr(roi_heads, "mask_targets",
                        lambda *a, **k: calls.append(len(a[1])) or mask_targets(*a, **k))
    batch = heads.mask_targets(images, sample, 28, positive)
    assert calls == [15] and [len(b) for b in batch] == [5, 0, 5, 5]
    assert all(torch.equal(b, e) for b, e in zip(batch, expected))
    assert any(bool((e > 0.5).any()) for e in expected)  # the crops do hold the objects

    images[2] = {**images[2], "masks": torch.nn.functional.pad(images[2]["masks"], (0, 8, 0, 8))}  # 136 x 136
    calls.clear()
    mixed = heads.mask_targets(images, sample, 28, positive)
    assert calls == [5, 0, 5, 5] and all(torch.equal(b, e) for b, e in zip(mixed, expected))


def test_smooth_l1_golden_and_as_torch():
    error = torch.tensor([0.0, 0.05, -0.1, 1.0, -3.0])
    beta = 1 / 9
    expected = sum(0.5 * e * e / beta if abs(e) < beta else abs(e) - 0.5 * beta for e in error.tolist())
    assert losses.smooth_l1(error, torch.zeros(5)).item() == pytest.approx(expected, rel=1e-6)
    as_torch = torch.nn.functional.smooth_l1_loss(error, torch.zeros(5), beta=beta, reduction="sum")
    torch.testing.assert_close(losses.smooth_l1(error, torch.zeros(5)), as_torch)


def test_sigmoid_mask_loss_reads_only_the_own_class():
    logits = torch.zeros(2, 3, 4, 4)
    logits[:, 2] = 50.0  # a confident wrong class must not matter to the sigmoid loss
    targets = torch.full((2, 4, 4), 0.5)
    labels = torch.tensor([1, 1])
    assert losses.mask_loss(logits, labels, targets).item() == pytest.approx(math.log(2), rel=1e-6)
    assert losses.mask_loss_softmax(logits, labels, targets) > 10  # the softmax variant is hurt by it


def test_select_classes_keeps_the_rows_of_the_chosen_categories():
    from maskrcnn_edu.weights import select_classes

    state = {
        "roi_heads.box_predictor.cls_score.weight": torch.arange(6.0)[:, None].repeat(1, 3),
        "roi_heads.box_predictor.bbox_pred.bias": torch.arange(24.0),
        "roi_heads.mask_predictor.mask_fcn_logits.bias": torch.arange(6.0),
        "roi_heads.box_head.fc6.bias": torch.arange(5.0),
    }
    picked = select_classes(state, [0, 3, 5])  # labels 1, 2 <- categories 3, 5
    assert picked["roi_heads.box_predictor.cls_score.weight"][:, 0].tolist() == [0, 3, 5]
    bbox_rows = [0, 1, 2, 3, 12, 13, 14, 15, 20, 21, 22, 23]
    assert picked["roi_heads.box_predictor.bbox_pred.bias"].tolist() == bbox_rows
    assert picked["roi_heads.mask_predictor.mask_fcn_logits.bias"].tolist() == [0, 3, 5]
    assert torch.equal(picked["roi_heads.box_head.fc6.bias"], state["roi_heads.box_head.fc6.bias"])
