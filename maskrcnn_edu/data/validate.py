"""What one sample is: the target format every dataset returns, the box a mask implies, and the
check that a user's own dataset keeps the format.

A sample is ``(image, target)`` as torchvision's detection models take it:

* ``image``: float ``[3, H, W]`` in 0..1;
* ``target["boxes"]``: float ``[N, 4]``, ``(x0, y0, x1, y1)`` in continuous pixel coordinates;
* ``target["labels"]``: int64 ``[N]``, 1..K (0 is the background, never an instance);
* ``target["masks"]``: uint8 ``[N, H, W]``, one binary mask per instance;
* ``target["image_id"]``: an ``int`` (optional for a user's dataset).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..boxes import masks_to_boxes

__all__ = ["tight_boxes", "check_sample", "image_from_uint8"]


def image_from_uint8(pixels: np.ndarray) -> Tensor:
    """An 8-bit RGB array ``[H, W, 3]`` -> the image format, float32 ``[3, H, W]`` in 0..1.

    Converted in numpy, on one thread: for one image, torch's intra-op threads cost more than
    they save, and they compete with the training loop in the same process (on a busy 2-core
    machine a 128 px image took 24 ms through torch, 0.04 ms through numpy).
    """
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32) / 255)


def tight_boxes(masks: Tensor) -> Tensor:
    """The tight box of each mask: ``masks [N, H, W]`` (none empty) -> float ``[N, 4]``.

    Pixel ``(i, j)`` is the unit square ``[j, j+1] x [i, i+1]``, so a mask's box runs from its
    first column to its last column **+ 1** (and the same for rows). That is COCO's ``bbox``
    (``pycocotools.mask.toBbox``) in xyxy form. ``boxes.masks_to_boxes`` follows
    ``torchvision.ops.masks_to_boxes``, which stops at the last column itself, hence the
    ``+ [0, 0, 1, 1]``. An empty mask would get the box ``(0, 0, 1, 1)``: callers drop empty
    instances before asking for their boxes.
    """
    return masks_to_boxes(masks) + masks.new_tensor([0, 0, 1, 1], dtype=torch.float)


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def check_sample(image, target, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` (e.g. ``"dataset index 3 (image id 17)"``) unless
    ``(image, target)`` is a sample in the format above. Returns nothing when it is.

    Checks the image (float ``[3, H, W]`` in 0..1), that ``boxes [N, 4]``, ``labels [N]`` and
    ``masks [N, H, W]`` agree on N and on the image's size, the dtypes, that labels are >= 1 and
    that no box is degenerate (``x1 <= x0`` or ``y1 <= y0``) or non-finite.
    """

    def fail(problem: str):
        raise ValueError(f"{where}: {problem}")

    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        fail(f"image must be a [3, H, W] tensor, got {_shape(image)}")
    if not image.is_floating_point():
        fail(f"image must be a float tensor in 0..1, got dtype {image.dtype}")
    if image.numel() and (image.min() < 0 or image.max() > 1):
        fail(f"image values must lie in 0..1, got {image.min().item():g}..{image.max().item():g}")
    if not isinstance(target, dict):
        fail(f"target must be a dict with boxes, labels and masks, got {type(target).__name__}")
    missing = [key for key in ("boxes", "labels", "masks") if key not in target]
    if missing:
        fail(f"target lacks {', '.join(missing)} (has {', '.join(map(str, target)) or 'no keys'})")
    boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
    height, width = image.shape[1:]

    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        fail(f"boxes must be a [N, 4] tensor, got {_shape(boxes)}")
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        fail(f"labels must be a [N] tensor, got {_shape(labels)}")
    if not isinstance(masks, Tensor) or masks.dim() != 3:
        fail(f"masks must be a [N, H, W] tensor, got {_shape(masks)}")
    if not len(boxes) == len(labels) == len(masks):
        fail(f"{len(boxes)} boxes, {len(labels)} labels and {len(masks)} masks: one of each per instance")
    if tuple(masks.shape[1:]) != (height, width):
        fail(f"masks are {tuple(masks.shape[1:])} but the image is {(height, width)}")

    if not boxes.is_floating_point():
        fail(f"boxes must be float, got dtype {boxes.dtype}")
    if labels.dtype != torch.int64:
        fail(f"labels must be int64, got dtype {labels.dtype}")
    if masks.dtype != torch.uint8:
        fail(f"masks must be uint8, got dtype {masks.dtype}")
    if (labels < 1).any():
        fail(f"labels must be >= 1 (0 is the background), got {labels.tolist()}")
    if not torch.isfinite(boxes).all():
        fail("boxes must be finite")
    degenerate = torch.where((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))[0]
    if len(degenerate):
        k = degenerate[0].item()
        fail(f"box {k} {boxes[k].tolist()} is degenerate: need x1 > x0 and y1 > y0")
