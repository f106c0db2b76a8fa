"""Matplotlib drawing for the book: feature maps, boxes, RoIPool's bins, RoIAlign's sampling points.

Every function draws on an ``ax`` it is given and returns that ``ax``, so the chapters compose
pictures from small pieces. Tensors or arrays are both accepted.

Drawing frame for feature maps (the one ``roi_ops`` reads values in): cell ``(i, j)`` is drawn as
the unit square **centred** on the point ``(x=j, y=i)``, i.e. ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]``,
because that point is where bilinear interpolation finds the cell's value. Axis ticks therefore
sit on cell centres. A box is drawn where an op reads it: ``box * spatial_scale`` for RoIPool and
for RoIAlign with ``aligned=False``; shifted by ``-0.5`` for RoIAlign with ``aligned=True``
(:func:`roi_align_box`). The y axis points down, as in an image.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from . import roi_ops

__all__ = [
    "to_numpy",
    "draw_feature_map",
    "draw_box",
    "roi_align_box",
    "draw_roi_pool_bins",
    "draw_sampling_points",
    "draw_detections",
]


def to_numpy(values) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like -> a NumPy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def draw_feature_map(
    ax: Axes,
    values=None,
    *,
    shape: tuple[int, int] | None = None,
    cmap: str = "Greys",
    vmin: float | None = None,
    vmax: float | None = None,
    grid: bool = True,
    colorbar: bool = False,
    title: str | None = None,
) -> Axes:
    """Draw a feature map ``values [H, W]`` as a heat map of unit cells (or an empty grid of ``shape``).

    Cell ``(i, j)`` covers ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]``; ticks mark cell centres.
    """
    if values is None:
        if shape is None:
            raise ValueError("draw_feature_map needs values [H, W] or shape=(H, W)")
        values = np.zeros(shape)
        cmap, vmin, vmax = "Greys", 0.0, 1.0  # a blank (white) map with only the grid
    values = to_numpy(values)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-D map [H, W], got shape {values.shape}")
    height, width = values.shape
    # imshow's default extent already centres pixel (i, j) on (j, i): exactly our frame.
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if grid:
        ax.vlines(np.arange(width + 1) - 0.5, -0.5, height - 0.5, color="0.6", linewidth=0.5)
        ax.hlines(np.arange(height + 1) - 0.5, -0.5, width - 0.5, color="0.6", linewidth=0.5)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_aspect("equal")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("x (feature cells)")
    ax.set_ylabel("y (feature cells)")
    if title is not None:
        ax.set_title(title)
    return ax


def draw_box(
    ax: Axes,
    box: Sequence[float],
    *,
    bins: tuple[int, int] | None = None,
    color: str = "C1",
    linestyle: str = "-",
    linewidth: float = 2.0,
    label: str | None = None,
) -> Axes:
    """Draw ``box = (x0, y0, x1, y1)``, already in the drawing frame (feature cells).

    ``bins=(PH, PW)`` also draws the thin lines that split the box into ``PH x PW`` equal bins,
    as RoIAlign splits it.
    """
    x0, y0, x1, y1 = (float(v) for v in to_numpy(box).reshape(4))
    ax.add_patch(
        Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linestyle=linestyle,
                  linewidth=linewidth, label=label)
    )
    if bins is not None:
        out_h, out_w = bins
        inner_x = np.linspace(x0, x1, out_w + 1)[1:-1]
        inner_y = np.linspace(y0, y1, out_h + 1)[1:-1]
        ax.vlines(inner_x, y0, y1, color=color, linewidth=linewidth / 2, linestyle=linestyle)
        ax.hlines(inner_y, x0, x1, color=color, linewidth=linewidth / 2, linestyle=linestyle)
    return ax


def roi_align_box(box: Sequence[float], spatial_scale: float = 1.0, aligned: bool = False) -> tuple[float, ...]:
    """Where ``roi_align`` reads ``box`` (image pixels), in the drawing frame: ``(x0, y0, x1, y1)``.

    That is ``box * spatial_scale``, shifted by ``-0.5`` when ``aligned``; without ``aligned`` a box
    is stretched to at least one cell, as the op does. Uses the op's own geometry code.
    """
    rois = torch.tensor([[0.0, *(float(v) for v in box)]])
    start, size = roi_ops._align_box_geometry(rois, spatial_scale, aligned)
    x0, y0 = start[0].tolist()
    width, height = size[0].tolist()
    return x0, y0, x0 + width, y0 + height


def draw_roi_pool_bins(
    ax: Axes, rows, cols, *, colors: tuple[str, str] = ("tab:red", "tab:purple"), alpha: float = 0.3
) -> Axes:
    """Shade RoIPool's quantized bins: ``rows [PH, 2]``, ``cols [PW, 2]`` half-open cell ranges.

    Bin ``(p, q)`` covers cells ``rows[p, 0] .. rows[p, 1] - 1`` x ``cols[q, 0] .. cols[q, 1] - 1``
    (from ``roi_ops.roi_pool_bins``). Neighbouring bins alternate between two colours like a
    checkerboard, so cells that two bins share (their floor/ceil edges overlap) show both.
    """
    rows, cols = to_numpy(rows), to_numpy(cols)
    for p, (r0, r1) in enumerate(rows):
        for q, (c0, c1) in enumerate(cols):
            corner, width, height = (c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0
            color = colors[(p + q) % 2]
            ax.add_patch(Rectangle(corner, width, height, facecolor=color, alpha=alpha, edgecolor="none"))
            ax.add_patch(Rectangle(corner, width, height, fill=False, edgecolor=color, linewidth=1.5))
    return ax


def draw_sampling_points(
    ax: Axes, ys, xs, *, color: str = "tab:blue", size: float = 14.0, label: str | None = "sampling points"
) -> Axes:
    """Mark RoIAlign's sampling points: ``ys [PH, gy]`` and ``xs [PW, gx]`` (from
    ``roi_ops.roi_align_sampling_points``); every pair ``(ys[i, a], xs[j, b])`` is one point."""
    grid_y, grid_x = np.meshgrid(to_numpy(ys).ravel(), to_numpy(xs).ravel(), indexing="ij")
    ax.scatter(grid_x.ravel(), grid_y.ravel(), s=size, color=color, edgecolor="white", linewidth=0.5,
               zorder=3, label=label)
    return ax


def _mask_overlay(masks: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    """All masks as one RGBA image: ``masks [K, H, W]`` bool, ``colours [K, 3]`` -> ``[H, W, 4]``.

    Each covered pixel takes the colour of the first mask that covers it (``argmax`` of a bool
    array finds the first ``True``), at opacity ``alpha``; uncovered pixels are transparent.
    """
    overlay = np.zeros((*masks.shape[1:], 4))
    overlay[..., :3] = colours[masks.argmax(axis=0)]
    overlay[..., 3] = masks.any(axis=0) * alpha
    return overlay


def draw_detections(
    ax: Axes,
    image,
    detections: dict,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    alpha: float = 0.45,
) -> Axes:
    """Draw ``image [3, H, W]`` (0..1) with the detections that score ``>= score_threshold``.

    ``detections``: as the model returns them for one image, ``boxes [D, 4]`` xyxy in pixels,
    ``labels [D]``, ``scores [D]`` and optionally ``masks [D, 1, H, W]`` (probabilities, shown
    where ``> mask_threshold``). Each detection gets a colour: its mask tinted at ``alpha``, its
    box, and a ``"name score"`` label (``class_names[label]``, or the label number). Where masks
    overlap, the higher-scoring detection's colour shows.

    The image is drawn with pixel ``(i, j)`` on the square ``[j, j+1] x [i, i+1]``, the package's
    continuous pixel frame, so that boxes land on the pixels they bound.
    """
    pixels = to_numpy(image).transpose(1, 2, 0)  # [H, W, 3]
    height, width = pixels.shape[:2]
    extent = (0, width, height, 0)  # not imshow's default (pixel centres on integers): see above
    scores = to_numpy(detections["scores"])
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= score_threshold]  # kept detections, best first
    boxes, labels, scores = to_numpy(detections["boxes"])[order], to_numpy(detections["labels"])[order], scores[order]
    colours = np.asarray(matplotlib.colormaps["tab10"](np.arange(len(order)) % 10))[:, :3]  # [K, 3]

    ax.imshow(pixels, extent=extent)
    if "masks" in detections and len(order):
        masks = to_numpy(detections["masks"])[order, 0] > mask_threshold  # [K, H, W]
        ax.imshow(_mask_overlay(masks, colours, alpha), extent=extent)
    for (x0, y0, x1, y1), label, score, colour in zip(boxes, labels, scores, colours):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
        name = class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)
        ax.text(x0, y0, f"{name} {score:.2f}", color="white", fontsize=8, va="bottom",
                bbox=dict(facecolor=colour, edgecolor="none", alpha=0.8, pad=1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    return ax
