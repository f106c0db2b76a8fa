"""The full model: the same numbers as torchvision's maskrcnn_resnet50_fpn, and its own contracts.

torchvision's model is built with a fixed seed and random weights (nothing is downloaded), its
state dict loaded into ours, and both run on real photographs from scikit-image.
"""

import pytest
import torch
import torchvision
from skimage import data as skimage_data

from maskrcnn_edu.config import Config, shapes
from maskrcnn_edu.matching import BalancedSampler
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.model import load_checkpoint
from maskrcnn_edu.weights import load_torchvision, save_checkpoint


def photo(name, crop=None):
    image = torch.from_numpy(getattr(skimage_data, name)()).permute(2, 0, 1).float() / 255
    return image if crop is None else image[:, : crop[0], : crop[1]]


def torchvision_pair(num_classes, min_size=800, max_size=1333, seed=0):
    """torchvision's Mask R-CNN with seeded random weights, and ours with its state dict loaded."""
    torch.manual_seed(seed)
    theirs = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                num_classes=num_classes)
    # Random mask logits sit near 0, where thresholding at 0.5 is a coin toss; make them decisive.
    theirs.roi_heads.mask_predictor.mask_fcn_logits.weight.data *= 100
    theirs.roi_heads.score_thresh = 0.0  # so that random weights still give 100 detections
    theirs.transform.min_size, theirs.transform.max_size = (min_size,), max_size
    # weights=None builds trainable BatchNorm and trains all 5 stages: ours is configured alike.
    config = Config(num_classes=num_classes, norm="bn", trainable_layers=5, box_score_thresh=0.0,
                    min_size=min_size, max_size=max_size)
    ours = MaskRCNN(config)
    load_torchvision(ours, theirs.state_dict())
    return theirs, ours


def assert_same_detections(theirs, ours):
    for t, o in zip(theirs, ours):
        assert len(t["boxes"]) == len(o["boxes"]) > 0
        assert torch.equal(t["labels"], o["labels"])
        torch.testing.assert_close(o["boxes"], t["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(o["scores"], t["scores"], atol=1e-4, rtol=0)
        assert o["masks"].shape == t["masks"].shape
        a, b = t["masks"] > 0.5, o["masks"] > 0.5
        union = (a | b).flatten(1).sum(1)
        iou = (a & b).flatten(1).sum(1)[union > 0] / union[union > 0]
        assert (union > 0).any() and iou.min() > 0.99


@pytest.fixture(scope="module")
def coco_pair():
    return torchvision_pair(91)


@pytest.fixture(scope="module")
def small_pair():
    return torchvision_pair(5, min_size=320, max_size=512)


def test_inference_matches_torchvision_91_classes(coco_pair):
    theirs, ours = coco_pair
    image = photo("coffee")
    with torch.no_grad():
        assert_same_detections(theirs.eval()([image]), ours.eval()([image]))


def test_inference_matches_torchvision_5_classes_batch_of_two_sizes(small_pair):
    theirs, ours = small_pair
    images = [photo("astronaut"), photo("chelsea", crop=(250, 400))]
    with torch.no_grad():
        assert_same_detections(theirs.eval()(images), ours.eval()(images))


def test_rpn_proposals_match_torchvision(small_pair):
    theirs, ours = small_pair
    images = [photo("rocket"), photo("coffee", crop=(300, 333))]
    theirs.eval(), ours.eval()
    with torch.no_grad():
        batch, _ = theirs.transform(images)
        their_proposals, _ = theirs.rpn(batch, theirs.backbone(batch.tensors))
        trace = ours.trace(images)
    for t, o in zip(their_proposals, trace.proposals):
        assert t.shape == o.shape
        torch.testing.assert_close(o, t, atol=1e-3, rtol=0)


def test_losses_match_torchvision_with_the_same_samples(small_pair):
    theirs, ours = small_pair
    images = [photo("chelsea"), photo("coffee", crop=(320, 420))]
    targets = []
    for image, boxes, labels in [
        (images[0], [[40.0, 30.0, 200.0, 260.0], [250.0, 20.0, 420.0, 200.0]], [1, 3]),
        (images[1], [[10.0, 50.0, 300.0, 310.0]], [4]),
    ]:
        boxes = torch.tensor(boxes)
        masks = torch.zeros(len(boxes), *image.shape[-2:], dtype=torch.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
            m[y0 + 10 : y1 - 10, x0 + 5 : x1 - 20] = 1
        targets.append({"boxes": boxes, "labels": torch.tensor(labels), "masks": masks})

    # Both draw their RPN and RoI samples from a generator seeded alike.
    their_generator, our_generator = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    theirs.rpn.fg_bg_sampler = BalancedSampler(256, 0.5, their_generator)
    theirs.roi_heads.fg_bg_sampler = BalancedSampler(512, 0.25, their_generator)
    ours.rpn.sampler.generator = ours.roi_heads.sampler.generator = our_generator
    their_state = {k: v.clone() for k, v in theirs.state_dict().items()}
    try:
        their_losses = theirs.train()(images, targets)
        our_losses = ours.train()(images, targets)
    finally:  # BatchNorm's running statistics moved in train mode: restore them for the other tests
        theirs.load_state_dict(their_state)
        load_torchvision(ours, their_state)
        theirs.eval(), ours.eval()
    assert set(our_losses) == set(their_losses)
    for name in their_losses:
        torch.testing.assert_close(our_losses[name], their_losses[name], atol=1e-5, rtol=1e-4, msg=name)
    assert their_losses["loss_mask"] > 0 and their_losses["loss_box_reg"] > 0


@pytest.fixture(scope="module")
def shapes_model():
    torch.manual_seed(0)
    return MaskRCNN(shapes(box_score_thresh=0.0))


def shapes_image(seed=0, size=(128, 128)):
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed))


def test_images_without_objects_train_with_zero_box_and_mask_losses(shapes_model):
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 128, 128, dtype=torch.uint8)}
    losses = shapes_model.train()([shapes_image(1), shapes_image(2)], [empty, dict(empty)])
    shapes_model.eval()
    assert all(torch.isfinite(v) for v in losses.values())
    for name in ("loss_rpn_box_reg", "loss_box_reg", "loss_mask"):
        assert losses[name].item() == 0.0, name
    assert losses["loss_objectness"] > 0 and losses["loss_classifier"] > 0
    sum(losses.values()).backward()  # the graph holds together with no objects


def test_trace_agrees_with_forward(shapes_model):
    images = [shapes_image(3), shapes_image(4, (96, 140))]
    with torch.no_grad():
        detections = shapes_model.eval()(images)
        trace = shapes_model.trace(images)
    for d, t in zip(detections, trace.detections):
        for key in ("boxes", "labels", "scores", "masks"):
            assert torch.equal(d[key], t[key]), key
    assert len(trace.features) == 5 and len(trace.anchors) == 5
    assert len(trace.rpn.pre_nms_boxes[0]) >= len(trace.proposals[0]) > 0
    assert len(trace.heads.pre_nms[0]["boxes"]) >= len(trace.heads.detections[0]["boxes"])
    assert trace.heads.refined_boxes[0].shape[1:] == (4, 4)  # every class's refinement of every RoI
    assert trace.heads.mask_logits.shape[1:] == (4, 28, 28)


def test_readable_and_torchvision_ops_agree(shapes_model):
    compiled = MaskRCNN(shapes_model.config.replace(ops="torchvision")).eval()
    compiled.load_state_dict(shapes_model.state_dict())
    images = [shapes_image(5), shapes_image(6)]
    with torch.no_grad():
        assert_same_detections(compiled(images), shapes_model.eval()(images))


def test_checkpoint_round_trip_gives_identical_outputs(shapes_model, tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", shapes_model)
    restored = MaskRCNN.from_checkpoint(path).eval()
    assert restored.config == shapes_model.config
    image = [shapes_image(7)]
    with torch.no_grad():
        for a, b in zip(shapes_model.eval()(image), restored(image)):
            for key in a:
                assert torch.equal(a[key], b[key])


def test_checkpoint_for_another_class_count_reinitialises_the_predictors(shapes_model, tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", shapes_model)
    other = MaskRCNN(shapes_model.config.replace(num_classes=7, class_names=()))
    with pytest.warns(UserWarning, match=r"made for 4 classes, this model has 7: .*re-initialised"):
        from maskrcnn_edu.weights import load_weights

        load_weights(other, load_checkpoint(path)[1]["model"])
    assert torch.equal(other.roi_heads.box_head.fc6.weight, shapes_model.roi_heads.box_head.fc6.weight)
    assert other.roi_heads.box_predictor.cls_score.weight.shape[0] == 7


def test_from_torchvision_reads_the_class_count(small_pair, tmp_path):
    theirs, _ = small_pair
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    model = MaskRCNN.from_torchvision(tmp_path / "tv.pth")
    assert model.config.num_classes == 5
    assert torch.equal(model.rpn.head.objectness.weight, theirs.rpn.head.cls_logits.weight)


# --- bad input -------------------------------------------------------------------------------------


def good_target():
    return {"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([1]),
            "masks": torch.zeros(1, 128, 128, dtype=torch.uint8)}


def nan_image():
    image = torch.rand(3, 128, 128)
    image[1, 5, 7] = float("nan")
    return image


@pytest.mark.parametrize(
    "images, targets, message",
    [
        ([torch.rand(128, 128)], None,
         r"images\[0\]: image must be a \[3, H, W\] tensor, got a tensor of shape \(128, 128\)"),
        ([torch.rand(1, 3, 128, 128)], None, r"images\[0\]: image must be a \[3, H, W\] tensor"),
        ([torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8)], None,
         r"images\[0\]: image must be float in 0..1, got dtype torch.uint8"),
        ([torch.rand(3, 128, 128) * 255], None, r"images\[0\]: image values must lie in 0..1"),
        ([torch.rand(3, 128, 128)], [{**good_target(), "labels": torch.tensor([1, 2])}],
         r"targets\[0\]: 1 boxes, 2 labels and 1 masks"),
        ([torch.rand(3, 128, 128)], [{**good_target(), "boxes": torch.tensor([[50.0, 10.0, 50.0, 60.0]])}],
         r"targets\[0\]: target\['boxes'\]\[0\] .* has no area"),
        ([torch.rand(3, 128, 128)], [good_target(), good_target()], r"got 2 for 1 images"),
        ([torch.rand(3, 128, 128)], [{**good_target(), "labels": torch.tensor([9])}],
         r"targets\[0\]: target\['labels'\] must be below num_classes=4"),
        ([torch.rand(3, 128, 128)], [{**good_target(), "boxes": [[10.0, 10.0, 50.0, 60.0]]}],
         r"targets\[0\]: target\['boxes'\] must be a \[N, 4\] float tensor, got a list"),
        # Bad input that once passed the checks and failed deep inside, or silently:
        ([torch.rand(3, 128, 128)], [{**good_target(), "masks": good_target()["masks"] + 255}],
         r"targets\[0\]: target\['masks'\] must hold 0 and 1 only, got values up to 255"),
        ([torch.rand(3, 128, 128), nan_image()], None, r"images\[1\]: image has NaN or infinite pixels"),
        ([torch.rand(3, 128, 128).index_fill(2, torch.tensor([3]), float("inf"))], None,
         r"images\[0\]: image has NaN or infinite pixels"),
        ([torch.rand(3, 0, 0)], None, r"images\[0\]: image is empty: 0 x 0 pixels"),
        ([torch.rand(3, 128, 0)], None, r"images\[0\]: image is empty: 128 x 0 pixels"),
        ([torch.rand(3, 128, 128, dtype=torch.float64)], None,
         r"images\[0\]: image must be float32, got dtype torch.float64: call image.float\(\)"),
        ([torch.rand(3, 128, 128).half()], None,
         r"images\[0\]: image must be float32, got dtype torch.float16"),
        ([torch.rand(3, 128, 128).bfloat16()], None,
         r"images\[0\]: image must be float32, got dtype torch.bfloat16"),
    ],
)
def test_bad_input_is_a_clear_error(shapes_model, images, targets, message):
    shapes_model.train(targets is not None)
    with pytest.raises(ValueError, match=message):
        shapes_model(images, targets)
    shapes_model.eval()


def test_state_dict_of_another_architecture_is_refused(shapes_model):
    resnet = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(ValueError, match=r"does not fit this model .*unexpected keys"):
        load_torchvision(shapes_model, resnet)
    coco_model = MaskRCNN(Config(num_classes=4))  # R50 weights into the R18 shapes model
    with pytest.raises(ValueError, match=r"does not fit this model|has shape .* the model expects"):
        load_torchvision(shapes_model, coco_model.state_dict())


def test_from_torchvision_reads_the_class_count_and_names_coco(coco_pair, small_pair):
    coco = MaskRCNN.from_torchvision(coco_pair[0].state_dict())
    assert coco.config.num_classes == 91 and coco.config.class_names[1] == "person"
    five = MaskRCNN.from_torchvision(small_pair[0].state_dict())
    assert five.config.num_classes == 5 and five.config.class_names == ()


def test_bool_masks_of_0_and_1_pass_the_value_check():
    from maskrcnn_edu.inputs import check_target

    with pytest.raises(ValueError, match=r"must be uint8, got dtype torch.bool"):  # the dtype, not the values
        check_target({**good_target(), "masks": good_target()["masks"].bool()}, (128, 128), "targets[0]")
    check_target(good_target(), (128, 128), "targets[0]")
