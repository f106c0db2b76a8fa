"""Crops of one annotated photograph: the samples of a small "own data" set.

A photograph with its instance masks is cut into windows. Training windows are drawn at random
inside one region of the photograph and held-out windows tile another region, so that the two sets
never share a pixel. An instance that a window cuts keeps its visible part when at least
``min_visible`` of its pixels are inside the window, and is dropped otherwise.

Windows are ``(x0, y0, x1, y1)`` in whole pixels, half-open: the window holds columns ``x0..x1-1``
and rows ``y0..y1-1`` (so its box, in the package's continuous pixel coordinates, is the same four
numbers).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .validate import tight_boxes

__all__ = ["visible_fraction", "crop_sample", "random_windows", "grid_windows", "crop_samples"]


def visible_fraction(masks: Tensor, window) -> Tensor:
    """The share of each instance's pixels inside ``window``: ``masks [N, H, W]`` -> float ``[N]``
    (0 for an empty mask)."""
    x0, y0, x1, y1 = (int(v) for v in window)
    total = masks.flatten(1).sum(dim=1).float()  # [N]
    inside = masks[:, y0:y1, x0:x1].flatten(1).sum(dim=1).float()  # [N]
    return inside / total.clamp(min=1)


def crop_sample(image: Tensor, masks: Tensor, window, labels: Tensor | None = None, min_visible: float = 0.5,
                image_id: int | None = None) -> tuple[Tensor, dict]:
    """One window of an annotated image, as a sample in torchvision's detection format.

    ``image [C, H, W]``, ``masks [N, H, W]`` (bool or 0/1), ``labels [N]`` (default: all 1). Returns
    ``(image [C, h, w], target)`` with ``h = y1 - y0``, ``w = x1 - x0``; ``target`` holds the kept
    instances (those with at least ``min_visible`` of their pixels in the window, and at least one):
    ``boxes [K, 4]`` (the tight boxes of their visible parts), ``labels [K]``, ``masks [K, h, w]``
    uint8, and ``image_id`` when given.
    """
    x0, y0, x1, y1 = (int(v) for v in window)
    if not (0 <= x0 < x1 <= image.shape[-1] and 0 <= y0 < y1 <= image.shape[-2]):
        raise ValueError(f"window {tuple(window)} is not inside the {tuple(image.shape[-2:])} image")
    if labels is None:
        labels = torch.ones(len(masks), dtype=torch.int64)
    fraction = visible_fraction(masks, window)  # [N]
    keep = (fraction > 0) & (fraction >= min_visible)  # [N]
    kept = masks[keep][:, y0:y1, x0:x1].to(torch.uint8)  # [K, h, w]
    target = {"boxes": tight_boxes(kept) if len(kept) else torch.zeros(0, 4), "labels": labels[keep],
              "masks": kept}
    if image_id is not None:
        target["image_id"] = int(image_id)
    return image[:, y0:y1, x0:x1].clone(), target


def random_windows(region, size: tuple[int, int], count: int,
                   generator: torch.Generator | None = None) -> Tensor:
    """``count`` windows of ``size = (width, height)`` at random places inside ``region`` (x0, y0, x1, y1)
    -> int64 ``[count, 4]``. Windows may overlap each other, never the outside of the region."""
    x0, y0, x1, y1 = (int(v) for v in region)
    width, height = size
    if width > x1 - x0 or height > y1 - y0:
        raise ValueError(f"a {width} x {height} window does not fit the region {tuple(region)}")
    xs = torch.randint(x0, x1 - width + 1, (count,), generator=generator)  # [count]
    ys = torch.randint(y0, y1 - height + 1, (count,), generator=generator)  # [count]
    return torch.stack([xs, ys, xs + width, ys + height], dim=1)


def grid_windows(region, columns: int, rows: int = 1) -> Tensor:
    """``region`` (x0, y0, x1, y1) cut into ``rows x columns`` windows that do not overlap and cover it
    -> int64 ``[rows * columns, 4]``, row by row (edges rounded to whole pixels)."""
    x0, y0, x1, y1 = (int(v) for v in region)
    xs = torch.linspace(x0, x1, columns + 1).round().long()  # [columns + 1]
    ys = torch.linspace(y0, y1, rows + 1).round().long()  # [rows + 1]
    top, left = torch.meshgrid(ys[:-1], xs[:-1], indexing="ij")  # [rows, columns]
    bottom, right = torch.meshgrid(ys[1:], xs[1:], indexing="ij")
    return torch.stack([left, top, right, bottom], dim=-1).reshape(-1, 4)


def crop_samples(image: Tensor, masks: Tensor, windows: Tensor, labels: Tensor | None = None,
                 min_visible: float = 0.5, first_id: int = 1) -> list[tuple[Tensor, dict]]:
    """``crop_sample`` of every window of ``windows [W, 4]``, with image ids ``first_id``,
    ``first_id + 1``, ...: a list of samples that ``export_coco`` writes as it is."""
    return [crop_sample(image, masks, window.tolist(), labels, min_visible, image_id=first_id + k)
            for k, window in enumerate(windows)]
