"""Chapter 04's explorer: one detection from proposal to pasted mask.

The numbers the explorer shows are checked against the trace they come from and against the
library's own functions (IoU, level rule, paste), and the widget is driven by setting its
sliders' ``.value``.
"""
import math

import pytest
import torch

from maskrcnn_edu.boxes import box_iou
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.explorers.shell import View
from maskrcnn_edu.explorers.heads import detection_path, heads_explorer, heads_view
from maskrcnn_edu.config import shapes
from maskrcnn_edu.reference import paste_masks_loop


@pytest.fixture(scope="module")
def images():
    dataset = ShapesDataset(4, seed=3)
    return [dataset[i][0] for i in range(3)]


@pytest.fixture(scope="module")
def traces(model, images):
    return [model.trace(image) for image in images]


def test_path_follows_the_trace(traces, model):
    trace = traces[0]
    heads = trace.heads
    for d in range(len(heads.detections[0]["boxes"])):
        path = detection_path(trace, d, class_names=model.config.class_names)
        lineage = path.lineage
        for name, value in vars(trace.lineage(d)).items():  # the path builds on the trace's own lineage
            mine = getattr(lineage, name)
            assert torch.equal(mine, value) if torch.is_tensor(value) else mine == value
        roi = int(heads.detection_rois[0][d])
        assert lineage.roi == roi
        assert torch.equal(lineage.proposal, heads.proposals[0][roi])
        assert torch.equal(lineage.refined, heads.detections[0]["boxes"][d])
        # The detection's box is its RoI's refinement for the detection's class.
        assert torch.allclose(lineage.refined, heads.refined_boxes[0][roi, lineage.label])
        assert lineage.score == pytest.approx(float(heads.class_scores[0][roi, lineage.label]))
        assert path.class_name == model.config.class_names[lineage.label]
        assert lineage.roi_level == int(heads.roi_levels[0][roi])
        assert path.iou == pytest.approx(float(box_iou(lineage.proposal[None], lineage.refined[None])))
        assert torch.equal(lineage.mask_logits, heads.detection_mask_logits[0][d])
        assert path.num_detections == len(heads.detections[0]["boxes"])


def test_levels_follow_the_rule_by_hand(traces):
    # k = floor(4 + log2(sqrt(wh) / 224)) clamped to 2..5, for the proposal (box head) and the
    # refined box (mask head, at inference).
    def rule(box):
        width, height = (box[2] - box[0]).item(), (box[3] - box[1]).item()
        return min(max(math.floor(4 + math.log2(math.sqrt(width * height) / 224) + 1e-6), 2), 5)

    for trace in traces:
        for d in range(len(trace.heads.detections[0]["boxes"])):
            path = detection_path(trace, d)
            assert path.lineage.roi_level == rule(path.lineage.proposal)
            assert path.mask_level == rule(path.lineage.refined)
            assert path.stride == 2**path.lineage.roi_level


def test_pasted_mask_is_the_models_own(traces):
    trace = traces[0]
    masks = trace.heads.detections[0]["masks"]
    boxes = trace.heads.detections[0]["boxes"]
    # Shapes images are not resized (128 px in, 128 px seen), so trace.detections pastes in the same frame.
    assert trace.batch.image_sizes[0] == trace.original_sizes[0]
    assert shapes().aligned  # the shipped model pastes pixel-exact
    for d in range(len(boxes)):
        path = detection_path(trace, d, aligned=True)
        torch.testing.assert_close(path.pasted, trace.detections[0]["masks"][d, 0])
        # torchvision's convention, for a model with aligned=False, is the loop of reference.py
        unaligned = detection_path(trace, d, aligned=False).pasted
        loop = paste_masks_loop(masks[d : d + 1], boxes[d : d + 1], (128, 128))
        torch.testing.assert_close(unaligned, loop[0, 0])


def test_pasted_mask_covers_the_shape(traces, images):
    # The best detection of image 0 is a real object: its mask overlaps the ground truth well.
    dataset = ShapesDataset(4, seed=3)
    _, target = dataset[0]
    path = detection_path(traces[0], 0)
    pasted = path.pasted > 0.5
    ious = [(pasted & (m > 0)).sum().item() / (pasted | (m > 0)).sum().item() for m in target["masks"]]
    assert max(ious) > 0.8


def test_bad_indices_name_the_argument(traces):
    count = len(traces[0].heads.detections[0]["boxes"])
    with pytest.raises(ValueError, match="detection must be an int in 0"):
        detection_path(traces[0], count)
    with pytest.raises(ValueError, match="image must be an int in 0"):
        detection_path(traces[0], 0, image=1)


def test_training_trace_is_refused(model):
    image, target = ShapesDataset(1, seed=3)[0]
    with pytest.raises(ValueError, match="without targets"):
        detection_path(model.trace(image, target), 0)


def test_view_caption_and_figure(traces, model):
    view = heads_view(traces[1], detection=1, image_index=1, class_names=model.config.class_names)
    assert isinstance(view, View)
    path = view.path
    assert path.image_index == 1 and path.lineage.detection == 1
    assert f"Image 1, detection 1 of {path.num_detections}" in view.caption
    assert f"{path.class_name}, score {path.lineage.score:.3f}" in view.caption
    assert f"read from P{path.lineage.roi_level}" in view.caption
    assert f"IoU {path.iou:.2f}" in view.caption
    assert len(view.figure.axes) >= 4
    assert heads_view(traces[1], detection=1, draw=False).figure is None


def test_explorer_sliders_drive_the_view(model, images, traces):
    explorer = heads_explorer(model, images, draw=False)
    assert explorer.state.path.image_index == 0 and explorer.state.path.lineage.detection == 0

    explorer.controls["detection"].value = 2
    expected = detection_path(traces[0], 2, class_names=model.config.class_names)
    assert explorer.state.path.lineage.detection == 2
    assert torch.equal(explorer.state.path.lineage.refined, expected.lineage.refined)
    assert explorer.state.path.class_name in explorer.state.caption

    explorer.controls["image"].value = 2
    count = len(traces[2].heads.detections[0]["boxes"])
    assert explorer.controls["detection"].max == count - 1
    assert explorer.state.path.image_index == 2
    shown = explorer.state.path.lineage
    assert torch.equal(shown.refined, traces[2].heads.detections[0]["boxes"][shown.detection])


def test_explorer_clamps_detection_when_image_has_fewer(model, images, traces):
    counts = [len(t.heads.detections[0]["boxes"]) for t in traces]
    many, few = max(range(3), key=counts.__getitem__), min(range(3), key=counts.__getitem__)
    if counts[many] == counts[few]:
        pytest.skip("the three images have as many detections each")
    explorer = heads_explorer(model, images, draw=False)
    explorer.controls["image"].value = many
    explorer.controls["detection"].value = counts[many] - 1
    explorer.controls["image"].value = few  # the old detection index does not exist here
    assert explorer.state.path.image_index == few
    assert explorer.state.path.lineage.detection == counts[few] - 1


def test_explorer_draws_a_picture(model, images):
    explorer = heads_explorer(model, images[:1], draw=True)
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    bundle = explorer._repr_mimebundle_()
    assert "image/png" in bundle and bundle["text/plain"] == explorer.state.caption


def test_image_without_detections(model):
    blank = torch.zeros(3, 64, 64)
    trace = model.trace(blank)
    if len(trace.heads.detections[0]["boxes"]):
        pytest.skip("the model finds something on a blank image")
    view = heads_view(trace, image_index=5, draw=False)
    assert view.caption == "Image 5: no detections." and view.path is None
