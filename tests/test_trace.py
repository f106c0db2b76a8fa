"""``model.trace``: everything recorded, consistent with itself and with ``forward``, and no side effects.

The shipped Shapes model (trainable BatchNorm, so a training pass *would* move running statistics)
on a real Shapes image; every cross-check here would fail if the trace recorded the wrong indices.
"""

import pytest
import torch
import torchvision

from maskrcnn_edu import MaskRCNN, shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.matching import BACKGROUND_LABEL, IGNORE


@pytest.fixture(scope="module")
def sample():
    return ShapesDataset(4, seed=3)[1]


def snapshot(model):
    return {name: t.detach().clone() for name, t in [*model.named_parameters(), *model.named_buffers()]}


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("with_targets", [False, True])
def test_trace_changes_nothing_and_keeps_no_gradients(model, sample, mode, with_targets):
    image, target = sample
    model.train(mode == "train")
    before = snapshot(model)
    generator_state = torch.get_rng_state()
    trace = model.trace(image, target if with_targets else None)
    assert model.training == (mode == "train")
    after = snapshot(model)
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, changed
    assert torch.equal(torch.get_rng_state(), generator_state)
    assert not any(t.requires_grad for t in trace.features + trace.stages)
    assert not trace.heads.class_logits.requires_grad
    model.eval()


def test_a_training_pass_would_have_moved_batchnorm(model, sample):
    """The guard above is not vacuous: the same pass outside ``trace`` changes running statistics."""
    image, target = sample
    before = snapshot(model)
    model.train()
    with torch.no_grad():
        model([image], [target])
    changed = [k for k in before if "running_mean" in k and not torch.equal(before[k], snapshot(model)[k])]
    model.load_state_dict({k: v for k, v in before.items() if k in model.state_dict()})
    model.eval()
    assert changed


def test_trace_with_targets_equals_the_training_forward(model, sample):
    image, target = sample
    torch.manual_seed(7)
    trace = model.trace(image, target)
    saved = snapshot(model)
    model.train()
    with torch.no_grad():
        losses = model([image], [target])  # draws the same samples: trace restored the RNG
    model.load_state_dict({k: v for k, v in saved.items() if k in model.state_dict()})
    model.eval()
    assert set(trace.losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
                                 "loss_mask"}
    for name, value in losses.items():
        assert torch.allclose(trace.losses[name], value, atol=1e-6), name


def test_inference_trace_equals_forward(model, sample):
    image, _ = sample
    trace = model.trace(image)
    with torch.no_grad():
        (detection,) = model([image])
    for key in ("boxes", "labels", "scores", "masks"):
        assert torch.equal(trace.detections[0][key], detection[key]), key


def test_rpn_records_where_each_box_came_from(model, sample):
    image, _ = sample
    trace = model.trace(image)
    rpn = trace.rpn
    anchors = torch.cat(rpn.anchors)
    level_of_anchor = torch.cat([torch.full((len(a),), i) for i, a in enumerate(rpn.anchors)])
    # Every pre-NMS box is its anchor's decoded box, clipped, and carries its anchor's level.
    index = rpn.pre_nms_anchor_index[0]
    height, width = trace.batch.image_sizes[0]
    decoded = rpn.decoded_boxes[0, index]
    clipped = torch.stack([decoded[:, 0].clamp(0, width), decoded[:, 1].clamp(0, height),
                           decoded[:, 2].clamp(0, width), decoded[:, 3].clamp(0, height)], 1)
    assert torch.allclose(rpn.pre_nms_boxes[0], clipped)
    assert torch.equal(rpn.pre_nms_levels[0], level_of_anchor[index])
    # The proposals are exactly the pre-NMS boxes NMS kept, and NMS kept what torchvision keeps.
    keep = rpn.nms_keep[0]
    assert torch.equal(rpn.proposals[0], rpn.pre_nms_boxes[0][keep])
    expected = torchvision.ops.batched_nms(rpn.pre_nms_boxes[0], rpn.pre_nms_scores[0], rpn.pre_nms_levels[0],
                                           0.7)
    assert torch.equal(keep, expected[: len(keep)])
    # NMS's survivors are all it kept; the proposals are the first of them, the rest cut by the top-k.
    assert torch.equal(rpn.nms_survivors[0], expected)
    assert len(rpn.nms_survivors[0]) > len(keep) == model.config.rpn_post_nms_top_n_test
    assert torch.equal(rpn.proposal_levels[0], level_of_anchor[rpn.proposal_anchor_index[0]])
    assert len(anchors) == rpn.decoded_boxes.shape[1]


def test_heads_record_where_each_detection_came_from(model, sample):
    image, _ = sample
    trace = model.trace(image)
    heads = trace.heads
    detections = heads.detections[0]
    assert len(detections["boxes"]) > 0
    rois = heads.detection_rois[0]
    # Each detection is its RoI's refinement for its own class, and its mask its own class's logits.
    assert torch.equal(detections["boxes"], heads.refined_boxes[0][rois, detections["labels"]])
    assert torch.equal(detections["scores"], heads.class_scores[0][rois, detections["labels"]])
    assert torch.allclose(detections["masks"][:, 0], torch.sigmoid(heads.detection_mask_logits[0]))
    assert heads.detection_mask_logits[0].shape[1:] == (28, 28)
    assert heads.box_features_shape[1:] == (64, 7, 7) and heads.mask_features_shape[1:] == (64, 14, 14)
    # Levels: 128 px Shapes RoIs are all far below 224 px, so every RoI reads P2.
    assert set(heads.roi_levels[0].tolist()) == {2}
    # Pre-NMS candidates are every (RoI, class) pair above the threshold, each pointing at its RoI.
    pre = heads.pre_nms[0]
    assert torch.equal(pre["boxes"], heads.refined_boxes[0][pre["rois"], pre["labels"]])
    # Per-class NMS's survivors are what torchvision's batched NMS keeps of the candidates, and each
    # detection points at its own candidate (after the rescoring's reordering, too).
    survivors = torchvision.ops.batched_nms(pre["boxes"], pre["scores"], pre["labels"], 0.5)
    assert torch.equal(heads.nms_survivors[0], survivors)
    candidates = heads.detection_candidates[0]
    assert set(candidates.tolist()) == set(survivors[: model.config.detections_per_img].tolist())
    assert torch.equal(pre["boxes"][candidates], detections["boxes"])
    assert torch.equal(pre["rois"][candidates], rois)


def test_lineage_follows_each_detection_back_to_its_anchor(model):
    images = [ShapesDataset(4, seed=3)[i][0] for i in (1, 2)]
    trace = model.trace(images)
    rpn, heads = trace.rpn, trace.heads
    for image in (0, 1):
        count = len(trace.detections[image]["boxes"])
        assert count > 0
        for k in range(count):
            line = trace.lineage(k, image)
            # The anchor, moved by its deltas and clipped, is the proposal the detection's RoI was.
            assert torch.equal(line.anchor, torch.cat(rpn.anchors)[line.anchor_index])
            assert torch.equal(line.rpn_box, rpn.decoded_boxes[image, line.anchor_index])
            assert torch.equal(line.proposal, rpn.pre_nms_boxes[image][line.candidate])
            assert torch.equal(line.proposal, trace.proposals[image][line.roi])
            # The refinement of its class is the detection's box, in the resized image's pixels.
            assert torch.equal(line.refined, heads.detections[image]["boxes"][k])
            assert torch.equal(line.final_box, trace.detections[image]["boxes"][k])
            assert line.label == int(trace.detections[image]["labels"][k])
            assert line.final_score == pytest.approx(float(trace.detections[image]["scores"][k]))
            assert line.objectness == pytest.approx(float(rpn.pre_nms_scores[image][line.candidate]))
    count = len(trace.detections[0]["boxes"])
    message = rf"detection must be an int in 0..{count - 1} \(image 0 has {count} detections\)"
    with pytest.raises(ValueError, match=message):
        trace.lineage(count)
    with pytest.raises(ValueError, match="image must be an int in 0..1"):
        trace.lineage(0, 2)
    with pytest.raises(ValueError, match="trace has no detections"):
        model.trace(*ShapesDataset(1, seed=3)[0]).lineage(0)


def test_training_trace_records_targets(model, sample):
    image, target = sample
    trace = model.trace(image, target)
    rpn, heads = trace.rpn, trace.heads
    labels = rpn.anchor_labels[0]
    assert set(labels.unique().tolist()) <= {1.0, float(BACKGROUND_LABEL), float(IGNORE)}
    positive, negative = rpn.sampled_positive[0], rpn.sampled_negative[0]
    assert (labels[positive] == 1).all() and (labels[negative] == BACKGROUND_LABEL).all()
    assert len(positive) + len(negative) == model.config.rpn_batch_size_per_image
    # Regression targets move each positive anchor exactly onto its matched object.
    anchors = torch.cat(rpn.anchors)
    moved = model.rpn.box_coder.decode(rpn.regression_targets[0][positive][None], anchors[positive][None])[0]
    assert torch.allclose(moved, rpn.matched_boxes[0][positive], atol=1e-3)
    # Every object of the (resized) target has at least one positive anchor matched to it.
    matched_to = rpn.matched_boxes[0][labels == 1]
    for box in trace.targets[0]["boxes"]:
        assert (matched_to == box).all(1).any()
    # RoI targets: positives carry their matched object's class, and a 28 x 28 mask target each.
    roi_labels, objects = heads.sampled_labels[0], heads.matched_objects[0]
    positives = roi_labels > 0
    assert torch.equal(roi_labels[positives], trace.targets[0]["labels"][objects[positives]])
    # The mask head trains on the positives, or on a random mask_positives_per_image of them.
    cap = model.config.mask_positives_per_image or len(roi_labels)
    assert set(heads.mask_rois[0].tolist()) <= set(torch.where(positives)[0].tolist())
    assert len(heads.mask_rois[0]) == min(int(positives.sum()), cap)
    assert heads.mask_targets[0].shape == (len(heads.mask_rois[0]), 28, 28)
    # bilinear crops of a 0/1 mask
    assert heads.mask_targets[0].min() >= 0 and heads.mask_targets[0].max() <= 1 + 1e-6


def test_trace_image_is_the_input_resized():
    model = MaskRCNN(shapes(min_size=96, max_size=96)).eval()
    image = torch.rand(3, 64, 80)
    trace = model.trace(image)
    assert trace.original_sizes == [(64, 80)]
    assert trace.batch.image_sizes == [(76, 96)]
    assert trace.scales[0] == pytest.approx((76 / 64, 96 / 80))
    resized = torch.nn.functional.interpolate(image[None], size=(76, 96), mode="bilinear",
                                              align_corners=False)[0]
    assert torch.allclose(trace.image(0), resized.clamp(0, 1), atol=1e-5)


def test_torchvision_ops_are_used_for_mask_targets_too(sample):
    """``Config(ops="torchvision")`` reaches every RoIAlign, the mask targets' included."""
    image, target = sample
    torch.manual_seed(0)
    readable = MaskRCNN(shapes())
    compiled = MaskRCNN(shapes(ops="torchvision"))
    compiled.load_state_dict(readable.state_dict())
    assert compiled.roi_heads.align_op is torchvision.ops.roi_align
    torch.manual_seed(1)
    ours = readable.trace(image, target)
    torch.manual_seed(1)
    theirs = compiled.trace(image, target)
    for a, b in zip(ours.heads.mask_targets, theirs.heads.mask_targets):
        assert torch.allclose(a, b, atol=1e-5)


def test_an_inference_trace_does_not_break_a_pending_backward(model, sample):
    """A reader may trace between a forward and its backward: an inference trace writes nothing back."""
    image, _ = sample
    x = image.clone().requires_grad_(True)
    loss = model([x])[0]["scores"].sum()
    model.trace(image)
    loss.backward()
    assert x.grad is not None


def test_a_softmax_trained_mask_head_is_read_with_its_softmax(sample):
    """A head trained with a softmax over classes predicts a class's share, not a sigmoid of its logit."""
    image, _ = sample
    torch.manual_seed(0)
    model = MaskRCNN(shapes(mask_loss="softmax", box_score_thresh=0.0)).eval()
    trace = model.trace(image)
    heads = trace.heads
    labels = heads.detections[0]["labels"]
    expected = torch.softmax(heads.mask_logits, dim=1)[torch.arange(len(labels)), labels]
    assert len(labels) > 0
    assert torch.allclose(heads.detections[0]["masks"][:, 0], expected)
    assert not torch.allclose(expected, torch.sigmoid(heads.detection_mask_logits[0]))
