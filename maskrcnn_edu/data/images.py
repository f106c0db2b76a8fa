"""The one image reader: any image file -> the model's image format, float32 ``[3, H, W]`` in 0..1.

What each kind of file becomes:

* 8-bit files (RGB, grayscale ``L``, ``LA``, palette ``P``, ``RGBA``, ``CMYK``, 1-bit) are converted
  to RGB by PIL and divided by 255; alpha is dropped (the colour is kept as stored).
* 16-bit grayscale files (PIL modes ``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, and ``I`` as PIL
  reads some 16-bit PNGs and TIFFs) are divided by 65535, their bit depth, and repeated over the
  three channels. PIL's own ``convert("RGB")`` clips them instead: every value above 255 becomes
  white, and the model sees a blank image. A 32-bit ``I`` image with values outside 0..65535, or
  a float (``F``) image, has no known scale and is refused.
* JPEG (and TIFF, WebP...) EXIF orientation is applied (``PIL.ImageOps.exif_transpose``): the
  image comes back as a viewer shows it. COCO's annotations of such images are in this
  transposed frame, as COCO's own tools and torchvision's ``decode_image(...,
  apply_exif_orientation=True)`` read them; the image's ``height`` and ``width`` are the
  transposed ones.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from .validate import image_from_uint8

__all__ = ["read_image"]

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # one channel, up to 16 significant bits
SIXTEEN_BIT_MAX = 65535


def _gray16(image: Image.Image, path: str) -> Tensor:
    """A one-channel integer image ``[H, W]`` -> float32 ``[3, H, W]``, divided by 65535."""
    pixels = np.asarray(image)
    low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
    if low < 0 or high > SIXTEEN_BIT_MAX:
        raise ValueError(
            f"image file {path}: a {image.mode} image must hold 16-bit values 0..{SIXTEEN_BIT_MAX} to be "
            f"scaled to 0..1, got {low}..{high}"
        )
    gray = pixels.astype(np.float32) / SIXTEEN_BIT_MAX  # [H, W]
    return torch.from_numpy(np.ascontiguousarray(np.broadcast_to(gray, (3, *gray.shape))))


def _to_tensor(image: Image.Image, path: str) -> Tensor:
    """A decoded PIL image, any mode -> float32 ``[3, H, W]`` in 0..1."""
    if image.mode in SIXTEEN_BIT_MODES:
        return _gray16(image, path)
    if image.mode == "F":
        raise ValueError(f"image file {path}: a float image (mode F) has no known range to scale to 0..1")
    return image_from_uint8(np.asarray(image.convert("RGB")))  # [H, W, 3] uint8 -> [3, H, W] float


def read_image(path, label: str | None = None) -> Tensor:
    """The image file ``path`` -> float32 ``[3, H, W]`` in 0..1, EXIF orientation applied.

    ``label`` (e.g. ``"image id 17"``) is added to the error after the file name. Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for one that is
    not an image, is truncated, or has a mode with no known scale.
    """
    path = os.fspath(path)
    named = f"{path} ({label})" if label else path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {named} not found")
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)  # decodes the file: a corrupt one fails here
            upright.load()
    except (OSError, SyntaxError, ValueError) as err:  # PIL's ways of saying "not an image"
        raise ValueError(f"cannot read image file {named}: {err}") from err
    return _to_tensor(upright, named)
