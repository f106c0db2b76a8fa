"""Anchors: the fixed reference boxes the RPN scores and refines, tiled over every feature map.

Each FPN level gets its own anchor sizes (32 px on the stride-4 level up to 512 px on stride 64)
and the same aspect ratios. At every cell of a level sit ``len(sizes) x len(ratios)`` *cell
anchors*, centred on the cell's top-left image pixel (torchvision's and detectron2's choice; Detectron
centred them on the cell).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["AnchorGenerator", "cell_anchors"]


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float], dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Tensor:
    """The anchors of one cell, centred on (0, 0) -> ``[len(ratios) * len(sizes), 4]``.

    An anchor of size ``s`` and ratio ``r = h / w`` keeps the area ``s^2``: ``w = s / sqrt(r)``,
    ``h = s sqrt(r)``. Ratio-major order; corners rounded to whole pixels, as torchvision does.
    """
    sizes = torch.as_tensor(sizes, dtype=dtype, device=device)
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
    height_factor = torch.sqrt(ratios)
    widths = (1 / height_factor[:, None] * sizes[None, :]).reshape(-1)
    heights = (height_factor[:, None] * sizes[None, :]).reshape(-1)
    return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()


class AnchorGenerator:
    """Anchors for every level of a feature pyramid.

    Args:
        sizes: one tuple of sizes (pixels) per level, e.g. ``((32,), (64,), (128,), (256,), (512,))``.
        aspect_ratios: one tuple of ratios ``h / w`` per level.
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[Sequence[float]]):
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"sizes has {len(sizes)} levels but aspect_ratios has {len(aspect_ratios)}")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(r) for r in aspect_ratios)

    def num_anchors_per_location(self) -> list[int]:
        """``A`` of every level: how many anchors sit at each cell (sizes x ratios)."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def level_anchors(self, grid_size: tuple[int, int], stride: tuple[int, int], level: int,
                      dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        """Anchors of one level: ``[H * W * A, 4]``, cell-major (all A anchors of cell 0, then cell 1...).

        ``grid_size = (H, W)`` cells, ``stride = (s_h, s_w)`` image pixels per cell.
        """
        (grid_h, grid_w), (stride_h, stride_w) = grid_size, stride
        base = cell_anchors(self.sizes[level], self.aspect_ratios[level], dtype, device)  # [A, 4]
        shift_x = torch.arange(grid_w, device=device) * stride_w
        shift_y = torch.arange(grid_h, device=device) * stride_h
        shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)  # [H*W, 1, 4]
        return (shifts + base[None]).reshape(-1, 4)

    def __call__(self, padded_size: tuple[int, int], feature_maps: Sequence[Tensor]) -> list[Tensor]:
        """Anchors for a batch padded to ``padded_size = (H, W)`` -> per level ``[H_l * W_l * A, 4]``.

        ``feature_maps``: one ``[N, C, H_l, W_l]`` per level (only their sizes, dtype and device are
        read). A level's stride is the padded image size divided (integer division) by its grid size;
        every image of the batch shares these anchors.
        """
        if len(feature_maps) != len(self.sizes):
            raise ValueError(f"got {len(feature_maps)} feature maps for {len(self.sizes)} anchor levels")
        anchors = []
        for level, features in enumerate(feature_maps):
            grid = tuple(features.shape[-2:])
            stride = (padded_size[0] // grid[0], padded_size[1] // grid[1])
            anchors.append(self.level_anchors(grid, stride, level, features.dtype, features.device))
        return anchors
