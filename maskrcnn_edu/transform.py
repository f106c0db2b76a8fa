"""From a list of images of any sizes to one normalised, padded batch, and detections back.

1. **normalize** with ImageNet's mean and std (the backbone was trained on such inputs);
2. **resize** so the short side is ``min_size`` unless that makes the long side exceed
   ``max_size`` (800 / 1333 for COCO), with boxes and masks resized alike;
3. **pad** every image at the bottom and right to one size, a multiple of 32 so that the five
   FPN levels divide it evenly;
4. after detection, **map back**: boxes scaled to the original image, masks pasted into it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import Config
from .masks import paste_masks

__all__ = ["ImageBatch", "normalize", "resize", "resize_boxes", "pad_batch", "prepare_batch", "postprocess"]


@dataclass
class ImageBatch:
    """A padded batch: ``tensors [N, 3, H_pad, W_pad]``, and each image's resized size before padding."""

    tensors: Tensor
    image_sizes: list[tuple[int, int]]


def normalize(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``image [3, H, W]`` in 0..1 -> ``[3, H, W]``, zero-mean and unit-std per channel.

    ``mean`` and ``std`` hold one value per channel (ImageNet's, for the pretrained backbone).
    """
    mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device)
    std = torch.as_tensor(std, dtype=image.dtype, device=image.device)
    return (image - mean[:, None, None]) / std[:, None, None]


def resize_boxes(boxes: Tensor, original_size: tuple[int, int], new_size: tuple[int, int]) -> Tensor:
    """``boxes [N, 4]`` on an image of ``original_size (H, W)`` -> ``[N, 4]`` on one of ``new_size``."""
    ratio_h, ratio_w = (
        torch.tensor(new, dtype=torch.float32, device=boxes.device)
        / torch.tensor(old, dtype=torch.float32, device=boxes.device)
        for new, old in zip(new_size, original_size)
    )
    return boxes * torch.stack([ratio_w, ratio_h, ratio_w, ratio_h])


def resize(image: Tensor, target: dict | None, min_size: int, max_size: int) -> tuple[Tensor, dict | None]:
    """Resize ``image [3, H, W]`` to the detector's input scale -> ``[3, H', W']``.

    The target's ``boxes [N, 4]`` and ``masks [N, H, W]`` (if any) are resized alike, the masks to
    ``[N, H', W']``.
    """
    height, width = image.shape[-2:]
    scale = min(min_size / min(height, width), max_size / max(height, width))
    # recompute_scale_factor: the output size is floor(size * scale), and the interpolation uses the
    # exact ratio of the sizes (as torchvision does, so that the pixels agree).
    resized = F.interpolate(
        image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
    )[0]
    if target is None:
        return resized, None
    target = dict(target)
    if "boxes" in target:
        target["boxes"] = resize_boxes(target["boxes"], (height, width), resized.shape[-2:])
    if "masks" in target:
        masks = target["masks"][:, None].float()
        target["masks"] = F.interpolate(masks, size=resized.shape[-2:])[:, 0].byte()  # nearest: stays binary
    return resized, target


def pad_batch(images: list[Tensor], size_divisible: int = 32) -> Tensor:
    """Zero-pad ``[3, H_i, W_i]`` images at the bottom/right into ``[N, 3, H, W]``.

    H and W are the largest ``H_i`` and ``W_i`` rounded up to multiples of ``size_divisible``.
    """
    height = int(math.ceil(max(img.shape[-2] for img in images) / size_divisible) * size_divisible)
    width = int(math.ceil(max(img.shape[-1] for img in images) / size_divisible) * size_divisible)
    batch = images[0].new_zeros(len(images), images[0].shape[0], height, width)
    for i, img in enumerate(images):  # one copy per image
        batch[i, :, : img.shape[-2], : img.shape[-1]] = img
    return batch


def prepare_batch(images: list[Tensor], targets: list[dict] | None,
                  config: Config) -> tuple[ImageBatch, list[dict] | None]:
    """Normalise, resize and pad: the model's input stage. Targets (if any) follow their images.

    ``images``: ``[3, H_i, W_i]`` each -> an ``ImageBatch`` of ``tensors [N, 3, H, W]``, and the
    targets resized as their images (``resize``).
    """
    prepared, prepared_targets = [], []
    for i, image in enumerate(images):
        image = normalize(image, config.image_mean, config.image_std)
        target = targets[i] if targets is not None else None
        image, target = resize(image, target, config.min_size, config.max_size)
        prepared.append(image)
        prepared_targets.append(target)
    sizes = [tuple(img.shape[-2:]) for img in prepared]
    batch = ImageBatch(pad_batch(prepared, config.size_divisible), sizes)
    return batch, (prepared_targets if targets is not None else None)


def postprocess(detections: list[dict], image_sizes: list[tuple[int, int]],
                original_sizes: list[tuple[int, int]], aligned: bool = False,
                paste: bool = True) -> list[dict]:
    """Boxes ``[D, 4]`` back to each original image's pixels; mask probabilities ``[D, 1, M, M]``
    pasted into it -> ``[D, 1, H, W]`` (``paste_masks`` with the model's ``config.aligned`` convention).
    ``paste=False`` leaves the masks at ``[D, 1, M, M]``, for a caller that pastes a few at a time."""
    results = []
    for detection, size, original in zip(detections, image_sizes, original_sizes):
        detection = dict(detection)
        detection["boxes"] = resize_boxes(detection["boxes"], size, original)
        if "masks" in detection and paste:
            detection["masks"] = paste_masks(detection["masks"], detection["boxes"], original,
                                             aligned=aligned)
        results.append(detection)
    return results
