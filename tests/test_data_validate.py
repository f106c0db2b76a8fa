"""check_sample on a good sample and on each way a user's sample can be wrong; tight_boxes
against pycocotools' COCO bbox."""
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from maskrcnn_edu.data import check_sample, tight_boxes

WHERE = "dataset index 3 (image id 17)"


def good_sample():
    masks = torch.zeros(2, 6, 8, dtype=torch.uint8)
    masks[0, 1:3, 2:5] = 1
    masks[1, 4, 0] = 1
    target = {"boxes": tight_boxes(masks), "labels": torch.tensor([1, 2]), "masks": masks, "image_id": 17}
    return torch.rand(3, 6, 8, generator=torch.Generator().manual_seed(0)), target


def test_tight_box_runs_to_the_last_pixel_plus_one():
    _, target = good_sample()
    assert target["boxes"].tolist() == [[2, 1, 5, 3], [0, 4, 1, 5]]
    assert target["boxes"].dtype == torch.float32


def test_tight_boxes_are_cocos_bbox():
    generator = torch.Generator().manual_seed(1)
    masks = (torch.rand(20, 15, 11, generator=generator) > 0.97).to(torch.uint8)
    masks[:, 7, 5] = 1  # none empty
    rles = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy()))
    x, y, w, h = torch.from_numpy(mask_utils.toBbox(rles)).float().unbind(1)
    assert torch.equal(tight_boxes(masks), torch.stack([x, y, x + w, y + h], dim=1))


def test_a_good_sample_passes():
    check_sample(*good_sample(), WHERE)
    image, target = good_sample()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 6, 8, dtype=torch.uint8)}
    check_sample(image, empty, WHERE)  # an image without objects is a valid negative


def change(key, value):
    def apply(image, target):
        if key == "image":
            return value(image), target
        target = dict(target)
        if value is None:
            del target[key]
        else:
            target[key] = value(target[key])
        return image, target

    return apply


@pytest.mark.parametrize(
    "fault, message",
    [
        (change("image", lambda im: im[0]),
         r"image must be a \[3, H, W\] tensor, got a tensor of shape \(6, 8\)"),
        (change("image", lambda im: im[:1]),
         r"image must be a \[3, H, W\] tensor, got a tensor of shape \(1, 6, 8\)"),
        (change("image", lambda im: (im * 255).to(torch.uint8)), "image must be float in 0..1"),
        (change("image", lambda im: im * 255), "image values must lie in 0..1"),
        (change("image", lambda im: im.index_fill(1, torch.tensor([2]), float("nan"))),
         "image has NaN or infinite pixels"),
        (change("image", lambda im: im[:, :0]), "image is empty: 0 x 8 pixels"),
        (change("image", lambda im: im.double()), r"image must be float32, got dtype torch.float64"),
        (change("masks", lambda m: m * 255),
         r"target\['masks'\] must hold 0 and 1 only, got values up to 255"),
        (change("masks", None), "target lacks masks"),
        (change("boxes", lambda b: b[:, :3]),
         r"target\['boxes'\] must be \[N, 4\], got a tensor of shape \(2, 3\)"),
        (change("labels", lambda lab: lab[:, None]), r"target\['labels'\] must be a \[N\] int64 tensor"),
        (change("masks", lambda m: m[0]), r"target\['masks'\] must be a \[N, H, W\] uint8 tensor"),
        (change("masks", lambda m: m[:1]), "2 boxes, 2 labels and 1 masks"),
        (change("labels", lambda lab: lab[:1]), "2 boxes, 1 labels and 2 masks"),
        (change("masks", lambda m: m[:, :5]), r"target\['masks'\] are \(5, 8\) but the image is \(6, 8\)"),
        (change("labels", lambda lab: lab.int()), r"target\['labels'\] must be int64"),
        (change("boxes", lambda b: b.long()), r"target\['boxes'\] must be float"),
        (change("masks", lambda m: m.bool()), r"target\['masks'\] must be uint8"),
        (change("labels", lambda lab: lab - 1), r"target\['labels'\] must be >= 1 \(0 is the background\)"),
        (change("boxes", lambda b: b.index_fill(1, torch.tensor([2]), 1.0)),
         r"target\['boxes'\]\[0\] .* has no area"),
        (change("boxes", lambda b: b.index_fill(0, torch.tensor([1]), float("nan"))),
         r"target\['boxes'\] must be finite"),
        (change("boxes", lambda b: b.tolist()),
         r"target\['boxes'\] must be a \[N, 4\] float tensor, got a list"),
    ],
)
def test_each_fault_is_named_with_where_it_is(fault, message):
    image, target = fault(*good_sample())
    with pytest.raises(ValueError, match=rf"^dataset index 3 \(image id 17\): {message}"):
        check_sample(image, target, WHERE)


def test_a_target_that_is_not_a_dict():
    image, _ = good_sample()
    with pytest.raises(ValueError, match="target must be a dict"):
        check_sample(image, [1, 2], WHERE)


def test_a_label_beyond_the_model_classes_is_named():
    image, target = good_sample()
    check_sample(image, target, WHERE, num_classes=int(target["labels"].max()) + 1)
    with pytest.raises(ValueError, match=r"target\['labels'\] must be below num_classes=2"):
        check_sample(image, {**target, "labels": torch.full_like(target["labels"], 2)}, WHERE, num_classes=2)
