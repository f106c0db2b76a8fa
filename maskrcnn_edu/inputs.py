"""The one check of what the model and the datasets take: an image, and its target.

A sample is ``(image, target)`` as torchvision's detection models take it:

* ``image``: float32 ``[3, H, W]`` in 0..1, not empty, no NaN;
* ``target["boxes"]``: float ``[N, 4]``, ``(x0, y0, x1, y1)`` in continuous pixel coordinates;
* ``target["labels"]``: int64 ``[N]``, 1..K (0 is the background, never an instance);
* ``target["masks"]``: uint8 ``[N, H, W]``, one binary mask (0 and 1) per instance.

``MaskRCNN`` checks its inputs with ``check_inputs`` and the datasets (and ``export_coco``) check
each sample with ``check_sample``; both raise ``ValueError`` naming where the problem is (the
image index, or the dataset index and image id), the field, what was expected and what came.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["describe_value", "check_image", "check_target", "check_sample", "check_inputs"]


def describe_value(x: object) -> str:
    """A short description of ``x`` for error messages: its shape and dtype, or its type."""
    if isinstance(x, Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"a {type(x).__name__}"


def check_image(image: Tensor, where: str) -> None:
    """``image`` must be a float32 ``[3, H, W]`` tensor, not empty, with finite values in 0..1;
    ``where`` names it.

    float64, float16 and bfloat16 images are refused rather than converted: the model's weights
    are float32 (autocast lowers precision inside, from float32 inputs), so the caller says
    ``image.float()`` where a conversion is meant. One ``aminmax`` pass finds NaN (it propagates
    to both ends), infinities and values outside 0..1.
    """
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{where}: image must be a [3, H, W] tensor, got {describe_value(image)}")
    if not image.is_floating_point():
        raise ValueError(
            f"{where}: image must be float in 0..1, got dtype {image.dtype} (divide a uint8 image by 255)"
        )
    if image.dtype != torch.float32:
        raise ValueError(f"{where}: image must be float32, got dtype {image.dtype}: call image.float()")
    if image.numel() == 0:
        raise ValueError(f"{where}: image is empty: {image.shape[1]} x {image.shape[2]} pixels")
    low, high = (value.item() for value in image.aminmax())
    if not math.isfinite(low) or not math.isfinite(high):
        raise ValueError(f"{where}: image has NaN or infinite pixels (values {low:.3g}..{high:.3g})")
    if low < 0 or high > 1:
        raise ValueError(f"{where}: image values must lie in 0..1, got {low:.3g}..{high:.3g}")


def _check_field(target: dict, key: str, dims: int, layout: str, where: str) -> Tensor:
    value = target[key]
    if not isinstance(value, Tensor) or value.dim() != dims:
        raise ValueError(f"{where}: target[{key!r}] must be a {layout} tensor, got {describe_value(value)}")
    return value


def check_target(target: dict, image_size: tuple[int, int], where: str,
                 num_classes: int | None = None) -> None:
    """``target`` must hold ``boxes``, ``labels`` and ``masks`` of one image of ``image_size (H, W)``.

    ``boxes``: float ``[N, 4]``; ``labels``: int64 ``[N]``; ``masks``: uint8 ``[N, H, W]``. Checks
    the types, shapes and dtypes, that the three agree on N (``_check_layout``), that labels are
    ``1..K`` (below ``num_classes`` when given: the model's classes include the background), that
    every box is finite with ``x1 > x0`` and ``y1 > y0`` (``_check_values``) and that the masks hold
    0 and 1 only.
    """
    if not isinstance(target, dict):
        raise ValueError(
            f"{where}: target must be a dict with boxes, labels and masks, got {describe_value(target)}"
        )
    missing = [key for key in ("boxes", "labels", "masks") if key not in target]
    if missing:
        present = ", ".join(map(str, target)) or "no keys"
        raise ValueError(f"{where}: target lacks {', '.join(missing)} (has {present})")
    boxes, labels, masks = _check_layout(target, image_size, where)
    _check_values(boxes, labels, where, num_classes)
    if masks.numel() and masks.max() > 1:  # uint8: never below 0; 0/255 masks would give a negative loss
        raise ValueError(
            f"{where}: target['masks'] must hold 0 and 1 only, got values up to {masks.max().item()}"
        )


def _check_layout(target: dict, image_size: tuple[int, int], where: str) -> tuple[Tensor, Tensor, Tensor]:
    """The fields' shapes and dtypes -> ``boxes [N, 4]``, ``labels [N]``, ``masks [N, H, W]``."""
    boxes = _check_field(target, "boxes", 2, "[N, 4] float", where)
    labels = _check_field(target, "labels", 1, "[N] int64", where)
    masks = _check_field(target, "masks", 3, "[N, H, W] uint8", where)
    if boxes.shape[1] != 4:
        raise ValueError(f"{where}: target['boxes'] must be [N, 4], got {describe_value(boxes)}")
    if not len(boxes) == len(labels) == len(masks):
        raise ValueError(
            f"{where}: {len(boxes)} boxes, {len(labels)} labels and {len(masks)} masks: "
            "one of each per instance"
        )
    if tuple(masks.shape[1:]) != tuple(image_size):
        raise ValueError(
            f"{where}: target['masks'] are {tuple(masks.shape[1:])} but the image is {tuple(image_size)}"
        )
    if not boxes.is_floating_point():
        raise ValueError(f"{where}: target['boxes'] must be float, got dtype {boxes.dtype}")
    if labels.dtype != torch.int64:
        raise ValueError(f"{where}: target['labels'] must be int64, got dtype {labels.dtype}")
    if masks.dtype != torch.uint8:
        raise ValueError(f"{where}: target['masks'] must be uint8, got dtype {masks.dtype}")
    return boxes, labels, masks


def _check_values(boxes: Tensor, labels: Tensor, where: str, num_classes: int | None) -> None:
    """``labels [N]`` of 1 or more (below ``num_classes`` when given); ``boxes [N, 4]`` finite, each with
    an area."""
    if (labels < 1).any():
        raise ValueError(
            f"{where}: target['labels'] must be >= 1 (0 is the background), got {labels.tolist()}"
        )
    if num_classes is not None and (labels >= num_classes).any():
        raise ValueError(
            f"{where}: target['labels'] must be below num_classes={num_classes} "
            f"(classes 1..{num_classes - 1}), got {labels.tolist()}"
        )
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{where}: target['boxes'] must be finite, got {boxes.tolist()}")
    degenerate = torch.where((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))[0]
    if len(degenerate):
        k = degenerate[0].item()
        raise ValueError(
            f"{where}: target['boxes'][{k}] = {boxes[k].tolist()} has no area: need x1 > x0 and y1 > y0"
        )


def check_sample(image: Tensor, target: dict, where: str, num_classes: int | None = None) -> None:
    """One dataset sample: ``image [3, H, W]`` and its ``target`` (see ``check_target``).

    ``where`` names the sample in the error, e.g. ``"dataset index 3 (image id 17)"``.
    """
    check_image(image, where)
    check_target(target, tuple(image.shape[1:]), where, num_classes)


def check_inputs(images: Sequence[Tensor], targets: Sequence[dict] | None = None,
                 num_classes: int | None = None) -> None:
    """The model's inputs: a non-empty list of images ``[3, H_i, W_i]`` and, in training, one target
    per image (``check_target``)."""
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise ValueError(
            f"images must be a non-empty list of [3, H, W] float tensors, got {describe_value(images)}"
        )
    for i, image in enumerate(images):
        check_image(image, f"images[{i}]")
    if targets is None:
        return
    if not isinstance(targets, (list, tuple)) or len(targets) != len(images):
        count = len(targets) if isinstance(targets, (list, tuple)) else describe_value(targets)
        raise ValueError(
            f"targets must be a list of one dict per image: got {count} for {len(images)} images"
        )
    for i, (image, target) in enumerate(zip(images, targets)):
        check_target(target, tuple(image.shape[1:]), f"targets[{i}]", num_classes)
