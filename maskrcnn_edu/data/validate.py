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
from ..inputs import check_sample

__all__ = ["tight_boxes", "check_sample", "image_from_uint8"]

# `check_sample` lives in ``maskrcnn_edu.inputs``, shared with the model; it is re-exported here for datasets.


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
