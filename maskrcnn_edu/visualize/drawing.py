"""Matplotlib drawing for the book: every stage of detection, from one ``model.trace``.

Three layers, each built on the one before:

* **Primitives** draw on an ``ax`` they are given and return it: :func:`show_image`,
  :func:`draw_boxes` (the Keras notebooks' convention: anchors *dotted*, refined boxes *solid*,
  suppressed boxes *faint*), :func:`draw_masks`, :func:`class_colors`; and chapter 01's feature
  map, box, RoIPool-bin and sampling-point drawings. :func:`describe` is the one-line tensor log.
* **Drawings from a** ``Trace`` (``model.trace(image)`` or ``model.trace(image, target)``) make
  their own ``Figure``: anchors of a cell, anchor labels, refinements, objectness, NMS, proposals,
  RoI refinement, per-class NMS, mask logits and targets, activations.
* **Drawings from a model or a sample**: weight statistics and histograms, a sample's masks by
  class, ground truth vs prediction, an IoU grid, a precision-recall curve.

Figures are made with ``matplotlib.figure.Figure`` (not ``pyplot``), so pyplot keeps no reference
to them and a widget that redraws a thousand times leaks nothing; none of these functions calls
``plt.show()`` or closes a figure it did not open. Tensors or arrays are both accepted.

Image frame: pixel ``(i, j)`` is the unit square ``[j, j+1] x [i, i+1]`` (continuous pixel
coordinates, as every box in the package), so boxes land on the pixels they bound.

Drawing frame for feature maps (the one ``roi_ops`` reads values in): cell ``(i, j)`` is drawn as
the unit square **centred** on the point ``(x=j, y=i)``, i.e. ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]``,
because that point is where bilinear interpolation finds the cell's value. Axis ticks therefore
sit on cell centres. A box is drawn where an op reads it: ``box * spatial_scale`` for RoIPool and
for RoIAlign with ``aligned=False``; shifted by ``-0.5`` for RoIAlign with ``aligned=True``
(:func:`roi_align_box`). The y axis points down, as in an image.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Sequence

import matplotlib
import matplotlib.collections
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .. import roi_ops

__all__ = [
    "to_numpy",
    "describe",
    "class_colors",
    "show_image",
    "draw_boxes",
    "draw_masks",
    "draw_feature_map",
    "draw_box",
    "roi_align_box",
    "draw_roi_pool_bins",
    "draw_sampling_points",
    "draw_detections",
    # drawings from a Trace
    "anchor_objectness",
    "cell_anchor_indices",
    "draw_cell_anchors",
    "draw_anchor_labels",
    "draw_refinements",
    "draw_top_objectness",
    "draw_objectness_heatmaps",
    "draw_nms",
    "draw_proposals",
    "draw_roi_refinement",
    "draw_class_nms",
    "draw_mask_logits",
    "draw_mask_targets",
    "draw_activations",
    # weights
    "weight_statistics",
    "format_weight_table",
    "draw_weight_table",
    "weight_layers",
    "draw_weight_histograms",
    # samples and evaluation
    "draw_top_masks",
    "BoxMatches",
    "match_boxes", "greedy_match",
    "draw_matches",
    "draw_iou_grid",
    "draw_pr_curve",
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


# Primitives ---------------------------------------------------------------------------------------

BOX_STYLES = {
    # style: (linestyle, alpha, linewidth factor). Anchors dotted, refined solid, suppressed faint.
    "solid": ("-", None, 1.0),  # alpha None: opaque, unless a colour carries its own alpha
    "dotted": (":", None, 1.0),
    "faint": ("-", 0.25, 0.5),
}


def describe(tensor) -> str:
    """One line about a tensor (or array): shape, dtype, min, max, mean.

    ``describe(torch.arange(6.).reshape(2, 3))`` -> ``"[2, 3] float32  min 0  max 5  mean 2.5"``.
    Integer and bool tensors are summarised too (their mean as a float); an empty tensor says
    ``empty``; non-finite entries are counted (they would hide in min/max/mean).
    """
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.as_tensor(np.asarray(tensor))
    dtype = str(tensor.dtype).removeprefix("torch.")
    head = f"[{', '.join(str(n) for n in tensor.shape)}] {dtype}"
    if tensor.device.type != "cpu":
        head += f" ({tensor.device})"
    if tensor.numel() == 0:
        return f"{head}  empty"
    values = tensor.detach().to("cpu", torch.float64)
    finite = torch.isfinite(values)
    summary = f"{head}  min {values.min().item():.4g}  max {values.max().item():.4g}  mean {values.mean().item():.4g}"
    if not bool(finite.all()):
        summary += f"  ({int((~finite).sum())} non-finite)"
    return summary


def class_colors(num_classes: int) -> np.ndarray:
    """A fixed palette: ``[num_classes, 3]`` RGB in 0..1, index = class label.

    Label 0 (background) is grey; labels 1..9 take matplotlib's ``tab10`` colours (grey left
    out); beyond that, hues spaced by the golden ratio, so neighbouring labels differ.
    """
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    tab10 = np.asarray(matplotlib.colormaps["tab10"].colors)
    tab10 = tab10[[i for i in range(10) if i != 7]]  # drop tab10's grey: grey means background
    colours = [np.array([0.5, 0.5, 0.5])]
    for label in range(1, num_classes):
        if label <= len(tab10):
            colours.append(tab10[label - 1])
        else:
            hue = (label * 0.618033988749895) % 1.0
            colours.append(np.array(colorsys.hsv_to_rgb(hue, 0.75, 0.85)))
    return np.stack(colours[:num_classes]) if num_classes else np.zeros((0, 3))


def _image_pixels(image) -> np.ndarray:
    """``[3, H, W]`` tensor (channels first, torch's convention) or ``[H, W, 3]`` array in 0..1 ->
    ``[H, W, 3]`` NumPy array. One-channel images become grey RGB."""
    channels_first = isinstance(image, torch.Tensor)
    pixels = to_numpy(image)
    if not channels_first and pixels.ndim == 3 and pixels.shape[-1] not in (1, 3):
        channels_first = True  # a [3, H, W] array
    if pixels.ndim != 3 or (pixels.shape[0] if channels_first else pixels.shape[-1]) not in (1, 3):
        raise ValueError(f"image must be [3, H, W] (tensor) or [H, W, 3] (array), got shape {tuple(pixels.shape)}")
    if channels_first:
        pixels = pixels.transpose(1, 2, 0)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.clip(pixels.astype(np.float32), 0.0, 1.0)


def show_image(ax: Axes, image, title: str | None = None, extent: tuple | None = None) -> Axes:
    """Draw ``image`` (``[3, H, W]`` tensor in 0..1, or an ``[H, W, 3]`` array) in continuous pixels.

    Pixel ``(i, j)`` covers ``[j, j+1] x [i, i+1]``, so a box ``(x0, y0, x1, y1)`` drawn on the same
    axes bounds exactly the pixels it should. ``extent=(0, W, H, 0)`` stretches the picture onto
    another pixel grid (e.g. a resized image under boxes in original pixels). Axis ticks are off.
    """
    pixels = _image_pixels(image)
    height, width = pixels.shape[:2]
    if extent is None:
        extent = (0, width, height, 0)
    ax.imshow(pixels, extent=extent, interpolation="nearest")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax


def _colour_list(colors, count: int, labels: np.ndarray | None) -> list:
    """One colour per box: given per box, one for all, by class label, or cycling through ``tab10``."""
    if colors is None:
        if labels is not None:
            palette = class_colors(int(labels.max()) + 1 if len(labels) else 1)
            return [tuple(palette[label]) for label in labels]
        cycle = matplotlib.colormaps["tab10"].colors
        return [cycle[k % len(cycle)] for k in range(count)]
    if isinstance(colors, str) or (np.ndim(colors) == 1 and len(colors) in (3, 4) and not isinstance(colors[0], str)):
        return [colors] * count  # one colour for every box
    colors = list(colors)
    if len(colors) != count:
        raise ValueError(f"colors has {len(colors)} entries for {count} boxes")
    return colors


def _caption(label, score, class_names) -> str:
    parts = []
    if label is not None:
        label = int(label)
        parts.append(class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label))
    if score is not None:
        parts.append(f"{float(score):.2f}")
    return " ".join(parts)


def _rectangles(ax: Axes, boxes: np.ndarray, colours: list, linestyle, linewidth: float, alpha: float | None = None,
                gid: str | None = None) -> matplotlib.collections.PatchCollection:
    """Unfilled rectangles for ``boxes [N, 4]`` (x0, y0, x1, y1), added as one ``PatchCollection``
    (hundreds of boxes draw ten times faster than as separate patches); its ``gid`` names the style."""
    rectangles = [Rectangle((x0, y0), x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]
    collection = matplotlib.collections.PatchCollection(
        rectangles, facecolors="none", edgecolors=colours if len(colours) else "none", linestyles=linestyle,
        linewidths=linewidth, alpha=alpha, gid=gid)
    ax.add_collection(collection, autolim=False)
    return collection


def draw_boxes(
    ax: Axes,
    boxes,
    labels=None,
    scores=None,
    class_names: Sequence[str] | None = None,
    style: str = "solid",
    colors=None,
    linewidth: float = 1.5,
    captions: bool = True,
) -> Axes:
    """Draw ``boxes [N, 4]`` (x0, y0, x1, y1 in pixels) as rectangles.

    ``style``: ``"solid"`` (refined boxes, detections), ``"dotted"`` (anchors, RoIs before
    refinement) or ``"faint"`` (suppressed: thin, alpha 0.25) -- the Keras notebooks' convention.
    ``colors``: one colour, one per box, or ``None`` (by ``labels`` with :func:`class_colors`,
    else cycling). With ``labels`` and/or ``scores [N]`` and ``captions``, each box gets a caption
    ``"name score"`` inside its top-left corner (``class_names[label]``, or the number).
    The boxes of one call form one ``PatchCollection`` whose ``gid`` is the style (tests count its
    paths).
    """
    if style not in BOX_STYLES:
        raise ValueError(f"style must be one of {sorted(BOX_STYLES)}, got {style!r}")
    boxes = to_numpy(boxes).reshape(-1, 4).astype(float)
    labels = None if labels is None else to_numpy(labels).reshape(-1).astype(int)
    scores = None if scores is None else to_numpy(scores).reshape(-1).astype(float)
    for name, values in (("labels", labels), ("scores", scores)):
        if values is not None and len(values) != len(boxes):
            raise ValueError(f"{name} has {len(values)} entries for {len(boxes)} boxes")
    linestyle, alpha, width_factor = BOX_STYLES[style]
    colours = _colour_list(colors, len(boxes), labels)
    _rectangles(ax, boxes, colours, linestyle, linewidth * width_factor, alpha, gid=style)
    for k, ((x0, y0, x1, y1), colour) in enumerate(zip(boxes, colours)):
        if captions and (labels is not None or scores is not None):
            text = _caption(None if labels is None else labels[k], None if scores is None else scores[k], class_names)
            # Inside the box's top-left corner: never cut off by the image's edge.
            ax.text(x0, y0, text, color="white", fontsize=8, va="top", ha="left", clip_on=True,
                    bbox=dict(facecolor=colour, edgecolor="none", alpha=0.75 * (alpha or 1.0), pad=1))
    return ax


def draw_masks(ax: Axes, masks, colors=None, alpha: float = 0.45, threshold: float = 0.5) -> Axes:
    """Overlay ``masks [N, H, W]`` or ``[N, 1, H, W]`` (binary, or probabilities cut at ``threshold``).

    Each mask is tinted with its colour (``colors``: one per mask, default cycling ``tab10``) at
    opacity ``alpha``; where masks overlap, the first one's colour shows. Pixels as in
    :func:`show_image`, so draw the image first on the same axes.
    """
    masks = to_numpy(masks)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W] or [N, 1, H, W], got shape {tuple(masks.shape)}")
    if len(masks) == 0:
        return ax
    binary = masks.astype(np.float32) > threshold  # [N, H, W]
    colours = np.asarray([matplotlib.colors.to_rgb(c) for c in _colour_list(colors, len(masks), None)])
    height, width = binary.shape[1:]
    ax.imshow(_mask_overlay(binary, colours, alpha), extent=(0, width, height, 0), interpolation="nearest")
    return ax


def _new_figure(width: float, height: float, **kwargs) -> Figure:
    """A figure pyplot does not track (no leak when widgets redraw), constrained layout."""
    return Figure(figsize=(min(width, 10.0), height), layout="constrained", **kwargs)


# Helpers for drawings from a Trace ------------------------------------------------------------------

LEVEL_NAMES = ("P2", "P3", "P4", "P5", "P6")


def _check_image_index(trace, i: int) -> None:
    count = len(trace.batch.image_sizes)
    if not 0 <= i < count:
        raise ValueError(f"image index i={i} is out of range: the trace holds {count} image(s)")


def _need_training(trace, what: str) -> None:
    if trace.rpn.anchor_labels is None:
        raise ValueError(f"{what} needs a training trace: model.trace(image, target)")


def _need_inference(trace, what: str) -> None:
    if trace.heads.pre_nms is None:
        raise ValueError(f"{what} needs an inference trace: model.trace(image) without targets")


def _strides(trace, maps: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    """Each map's stride ``(sy, sx)`` in pixels: padded image size // grid size, as the anchors use."""
    padded_h, padded_w = trace.batch.tensors.shape[-2:]
    return [(padded_h // m.shape[-2], padded_w // m.shape[-1]) for m in maps]


def anchor_objectness(trace, i: int = 0) -> torch.Tensor:
    """Objectness probability of every anchor of image ``i`` -> ``[A_total]``, in the order of
    ``torch.cat(trace.anchors)`` (level by level; cell-major, then anchor within a cell)."""
    _check_image_index(trace, i)
    # objectness per level [N, A, H, W] -> [H, W, A] -> [H*W*A]: the anchors' own order.
    return torch.cat([level[i].permute(1, 2, 0).reshape(-1) for level in trace.rpn.objectness]).sigmoid()


def _image_figure(trace, i: int, width: float = 6.5, height: float = 6.0) -> tuple[Figure, Axes]:
    """A figure with one axes showing image ``i`` as the network saw it (resized pixels)."""
    fig = _new_figure(width, height)
    ax = fig.subplots()
    show_image(ax, trace.image(i))
    return fig, ax


def _centre_lines(ax: Axes, boxes_from: np.ndarray, boxes_to: np.ndarray, colours: list) -> None:
    """A thin line from each box's centre to its partner's centre (anchor -> refined box)."""
    start = (boxes_from[:, :2] + boxes_from[:, 2:]) / 2  # [N, 2] (x, y)
    end = (boxes_to[:, :2] + boxes_to[:, 2:]) / 2
    segments = np.stack([start, end], axis=1)  # [N, 2, 2]
    ax.add_collection(matplotlib.collections.LineCollection(segments, colors=colours, linewidths=1.0))


def _style_handle(label: str, style: str = "solid", colour="black", linestyle=None):
    """A legend entry drawn as a line in a box style (or an explicit line style)."""
    line_style, alpha, width_factor = BOX_STYLES[style]
    return matplotlib.lines.Line2D([], [], color=colour, alpha=alpha, linestyle=linestyle or line_style,
                                   linewidth=1.5 * max(width_factor, 0.8), label=label)


def _legend(ax: Axes, handles: list, outside: bool = False, **kwargs) -> None:
    """A legend inside the axes (lower right), or ``outside`` right of the figure's panels, where
    constrained layout makes room for it."""
    if outside:
        ax.figure.legend(handles=handles, fontsize=8, loc="outside right upper", **kwargs)
    else:
        ax.legend(handles=handles, fontsize=8, loc="lower right", framealpha=0.85, **kwargs)


def _level_name(level: int) -> str:
    """FPN level index (0 = P2) -> its name."""
    return LEVEL_NAMES[level] if level < len(LEVEL_NAMES) else f"level {level}"


def _class_name(label: int, class_names) -> str:
    return class_names[label] if class_names is not None and 0 <= label < len(class_names) else f"class {label}"


# Anchors ------------------------------------------------------------------------------------------


def cell_anchor_indices(trace, point_yx=None, i: int = 0) -> list[torch.Tensor]:
    """For each FPN level, the indices (into that level's anchors) of the cell nearest a point.

    ``point_yx``: ``(y, x)`` in the resized image's pixels, default the image centre. At a level of
    stride ``s`` the cell ``(round(y / s), round(x / s))`` is the one whose anchors are centred
    nearest the point (a cell's anchors are centred on its top-left pixel, ``(row * s, col * s)``).
    """
    _check_image_index(trace, i)
    height, width = trace.batch.image_sizes[i]
    y, x = (height / 2, width / 2) if point_yx is None else (float(point_yx[0]), float(point_yx[1]))
    indices = []
    for objectness, (stride_y, stride_x) in zip(trace.rpn.objectness, _strides(trace, trace.rpn.objectness)):
        per_cell, grid_h, grid_w = objectness.shape[1:]
        row = min(max(round(y / stride_y), 0), grid_h - 1)
        col = min(max(round(x / stride_x), 0), grid_w - 1)
        first = (row * grid_w + col) * per_cell  # cell-major order: A anchors per cell
        indices.append(torch.arange(first, first + per_cell))
    return indices


def draw_cell_anchors(trace, cell_yx=None, i: int = 0) -> Figure:
    """The anchors of one cell at every FPN level, drawn dotted on the image, one colour per level.

    ``cell_yx``: the point ``(y, x)`` in the resized image's pixels whose cell is shown at every
    level (default: the image centre); see :func:`cell_anchor_indices`. The legend gives each
    level's stride, anchor size (sqrt of the area) and ratios ``h / w``; a cross marks the point.
    """
    fig, ax = _image_figure(trace, i, width=6.5, height=7.5)
    height, width = trace.batch.image_sizes[i]
    y, x = (height / 2, width / 2) if cell_yx is None else (float(cell_yx[0]), float(cell_yx[1]))
    strides = _strides(trace, trace.rpn.objectness)
    level_colours = matplotlib.colormaps["tab10"].colors
    handles, corners = [], []
    for level, indices in enumerate(cell_anchor_indices(trace, (y, x), i)):
        anchors = to_numpy(trace.rpn.anchors[level][indices])  # [A, 4]
        colour = level_colours[level % 10]
        draw_boxes(ax, anchors, style="dotted", colors=colour, linewidth=2.0)
        w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        # A level's sizes are the sides of its square anchors (sqrt(area) of the rest would read 8.5
        # for a rounded 12 x 6 anchor of size 8); corners are rounded to pixels, so ratios are approximate.
        square = np.isclose(w, h)
        sides = w[square] if square.any() else np.sqrt(w * h)
        sizes = "/".join(sorted({f"{v:.0f}" for v in sides}, key=float))
        ratios = "/".join(sorted({f"{r:.1g}" for r in h / w}, key=float))
        shapes = ", ".join(f"{a:g}×{b:g}" for a, b in zip(w, h))
        name = _level_name(level)
        handles.append(_style_handle(f"{name} (stride {strides[level][1]}): size {sizes} px, h/w ≈ {ratios} "
                                     f"(w×h {shapes})", "dotted", colour))
        corners.append(anchors)
    corners = np.concatenate(corners)
    ax.plot([x], [y], marker="+", color="white", markersize=12, markeredgewidth=2)
    margin = 4
    ax.set_xlim(min(0, corners[:, 0].min()) - margin, max(width, corners[:, 2].max()) + margin)
    ax.set_ylim(max(height, corners[:, 3].max()) + margin, min(0, corners[:, 1].min()) - margin)
    ax.set_axis_on()
    ax.tick_params(labelsize=8)
    ax.set_title(f"Anchors of the cell nearest (x={x:g}, y={y:g}) at every FPN level: {len(corners)} anchors",
                 fontsize=10)
    fig.legend(handles=handles, fontsize=8, loc="outside lower center")
    return fig


def draw_anchor_labels(trace, i: int = 0, sampled_only: bool = False, max_negatives: int = 100,
                       seed: int = 0) -> Figure:
    """Positive (solid green), negative (faint red) and ignored (dotted orange) anchors of a training
    trace, with the ground-truth boxes (dashed blue). The title gives the counts.

    All anchors: every positive and ignored anchor, and ``max_negatives`` negatives drawn at random
    (``seed``; there are thousands). ``sampled_only``: just the anchors the RPN loss sampled.
    """
    from ..matching import BACKGROUND_LABEL, IGNORE

    _check_image_index(trace, i)
    _need_training(trace, "draw_anchor_labels")
    anchors = to_numpy(torch.cat(trace.rpn.anchors))
    labels = trace.rpn.anchor_labels[i]
    if sampled_only:
        positive, negative = trace.rpn.sampled_positive[i], trace.rpn.sampled_negative[i]
        ignored = torch.zeros(0, dtype=torch.long)
        drawn_negative = negative
        title = (f"Anchors sampled for the RPN loss: {len(positive)} positive, {len(negative)} negative\n"
                 f"(of {int((labels == 1).sum())} positive, {int((labels == BACKGROUND_LABEL).sum())} negative, "
                 f"{int((labels == IGNORE).sum())} ignored)")
    else:
        positive = torch.where(labels == 1)[0]
        negative = torch.where(labels == BACKGROUND_LABEL)[0]
        ignored = torch.where(labels == IGNORE)[0]
        generator = torch.Generator().manual_seed(seed)
        drawn_negative = negative[torch.randperm(len(negative), generator=generator)[:max_negatives]]
        title = (f"Anchor labels: {len(positive)} positive, {len(negative)} negative "
                 f"({len(drawn_negative)} drawn), {len(ignored)} ignored")
    fig, ax = _image_figure(trace, i, width=7.5, height=6.6)
    draw_boxes(ax, anchors[to_numpy(drawn_negative)], style="faint", colors="tab:red")
    draw_boxes(ax, anchors[to_numpy(ignored)], style="dotted", colors="tab:orange")
    draw_boxes(ax, anchors[to_numpy(positive)], style="solid", colors="tab:green", linewidth=2.0)
    if trace.targets is not None:
        objects = to_numpy(trace.targets[i]["boxes"]).reshape(-1, 4)
        _rectangles(ax, objects, ["tab:blue"] * len(objects), "--", 1.5, gid="ground truth")
    ax.set_title(title, fontsize=10)
    handles = [_style_handle("positive", "solid", "tab:green"), _style_handle("negative", "faint", "tab:red")]
    if not sampled_only:  # ignored anchors are never sampled
        handles.append(_style_handle("ignored", "dotted", "tab:orange"))
    _legend(ax, handles + [_style_handle("ground truth", colour="tab:blue", linestyle="--")])
    return fig


def _top_anchors(trace, i: int, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``top_k`` anchors of image ``i`` by objectness -> (indices into all anchors, probabilities)."""
    scores = anchor_objectness(trace, i)
    top = scores.topk(min(top_k, len(scores)))
    return top.indices, top.values


def draw_refinements(trace, i: int = 0, top_k: int = 20) -> Figure:
    """The ``top_k`` anchors by objectness (dotted) and the boxes the RPN's deltas move them to
    (solid, unclipped), each pair in one colour, a line joining their centres."""
    _check_image_index(trace, i)
    indices, _ = _top_anchors(trace, i, top_k)
    anchors = to_numpy(torch.cat(trace.rpn.anchors)[indices])
    refined = to_numpy(trace.rpn.decoded_boxes[i, indices])
    cycle = matplotlib.colormaps["tab20"].colors
    colours = [cycle[k % len(cycle)] for k in range(len(indices))]
    fig, ax = _image_figure(trace, i)
    draw_boxes(ax, anchors, style="dotted", colors=colours)
    draw_boxes(ax, refined, style="solid", colors=colours)
    _centre_lines(ax, anchors, refined, colours)
    ax.set_title(f"RPN refinement: the top {len(indices)} anchors by objectness (dotted)\n"
                 "and the boxes their predicted deltas make (solid)", fontsize=10)
    _legend(ax, [_style_handle("anchor", "dotted"), _style_handle("refined box", "solid")])
    return fig


def _score_colours(scores: np.ndarray, cmap: str = "viridis", vmin: float = 0.0, vmax: float = 1.0,
                   fade: bool = False):
    """Colours for scores on a colour map, and the mappable a colour bar needs. ``fade``: low
    scores also more transparent (opacity 0.3 .. 1), so that hundreds of weak boxes do not hide
    the strong ones."""
    mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(vmin, vmax), matplotlib.colormaps[cmap])
    colours = mappable.to_rgba(scores)  # [N, 4]
    if fade:
        colours[:, 3] = 0.3 + 0.7 * np.clip((scores - vmin) / (vmax - vmin), 0, 1)
    return [tuple(c) for c in colours], mappable


def draw_top_objectness(trace, i: int = 0, top_k: int = 50) -> Figure:
    """The ``top_k`` anchors by objectness probability (dotted), coloured by that probability."""
    _check_image_index(trace, i)
    indices, scores = _top_anchors(trace, i, top_k)
    scores = to_numpy(scores)
    order = np.argsort(scores, kind="stable")  # best drawn last, on top
    colours, mappable = _score_colours(scores[order])
    fig, ax = _image_figure(trace, i, width=7.0)
    draw_boxes(ax, to_numpy(torch.cat(trace.rpn.anchors)[indices])[order], style="dotted", colors=colours,
               linewidth=2.0)
    fig.colorbar(mappable, ax=ax, shrink=0.8, label="objectness (sigmoid)")
    ax.set_title(f"Top {len(indices)} anchors by objectness ({scores.min():.2f} to {scores.max():.2f})", fontsize=10)
    return fig


def draw_objectness_heatmaps(trace, i: int = 0) -> Figure:
    """Per FPN level, each cell's highest objectness probability over its anchors, one panel per
    level beside the image, on the image's pixel grid: cell ``(r, c)`` of stride ``s`` covers the
    pixels ``[c s, (c+1) s] x [r s, (r+1) s]`` it summarises (its anchors are centred on its top-left
    pixel, half a cell up and left of the square's centre). One colour bar, 0..1.
    """
    _check_image_index(trace, i)
    height, width = trace.batch.image_sizes[i]
    levels = trace.rpn.objectness
    panels = len(levels) + 1
    cols = 3
    rows = -(-panels // cols)
    fig = _new_figure(9.0, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    show_image(axes[0], trace.image(i), title="image")
    norm = matplotlib.colors.Normalize(0.0, 1.0)
    for level, (objectness, (sy, sx)) in enumerate(zip(levels, _strides(trace, levels))):
        heat = to_numpy(objectness[i].sigmoid().amax(dim=0))  # [H_l, W_l]
        grid_h, grid_w = heat.shape
        ax = axes[level + 1]
        ax.imshow(heat, cmap="magma", norm=norm, interpolation="nearest", extent=(0, grid_w * sx, grid_h * sy, 0))
        ax.set_xlim(0, width)  # the padding's cells lie outside the image
        ax.set_ylim(height, 0)
        ax.tick_params(labelsize=8)
        name = _level_name(level)
        ax.set_title(f"{name}: {grid_h}×{grid_w} cells, stride {sx}, max {heat.max():.2f}", fontsize=9)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm, matplotlib.colormaps["magma"]), ax=axes[:panels].tolist(),
                 shrink=0.8, label="max objectness over the cell's anchors")
    fig.suptitle("RPN objectness per FPN level (highest over each cell's anchors)", fontsize=11)
    return fig


# NMS and proposals ----------------------------------------------------------------------------------


def draw_nms(trace, i: int = 0) -> Figure:
    """The RPN's non-maximum suppression, two panels.

    Left, before NMS: every candidate box (the per-level top-k, clipped), solid, coloured by
    objectness. Right, after: the kept ones solid (coloured by objectness), the rest faint red
    (suppressed by NMS or cut by the post-NMS top-k). Counts in the titles.
    """
    _check_image_index(trace, i)
    boxes = to_numpy(trace.rpn.pre_nms_boxes[i])
    scores = to_numpy(trace.rpn.pre_nms_scores[i])
    kept = np.zeros(len(boxes), dtype=bool)
    kept[to_numpy(trace.rpn.nms_keep[i])] = True
    fig = _new_figure(10.0, 5.2)
    before, after = fig.subplots(1, 2)
    for ax in (before, after):
        show_image(ax, trace.image(i))
    order = np.argsort(scores, kind="stable")  # best drawn last, on top
    colours, mappable = _score_colours(scores[order], fade=True)
    draw_boxes(before, boxes[order], style="solid", colors=colours, linewidth=0.8)
    before.set_title(f"Before NMS: {len(boxes)} boxes", fontsize=10)
    draw_boxes(after, boxes[~kept], style="faint", colors="tab:red")
    order_kept = order[kept[order]]
    draw_boxes(after, boxes[order_kept], style="solid", colors=[colours[k] for k in np.where(kept[order])[0]],
               linewidth=0.8)
    after.set_title(f"After NMS: {int(kept.sum())} kept (solid), {int((~kept).sum())} suppressed (faint)", fontsize=10)
    _legend(after, [_style_handle("kept", "solid"), _style_handle("suppressed", "faint", "tab:red")])
    fig.colorbar(mappable, ax=[before, after], shrink=0.7, label="objectness")
    return fig


def draw_proposals(trace, i: int = 0, top_k: int = 50) -> Figure:
    """The ``top_k`` proposals by objectness (after NMS), solid, coloured by the FPN level of the
    anchor each came from."""
    _check_image_index(trace, i)
    scores = trace.rpn.proposal_scores[i]
    order = scores.argsort(descending=True, stable=True)[:top_k]
    boxes = to_numpy(trace.rpn.proposals[i][order])
    levels = to_numpy(trace.rpn.proposal_levels[i][order])
    level_colours = matplotlib.colormaps["tab10"].colors
    fig, ax = _image_figure(trace, i, width=7.0)
    draw_boxes(ax, boxes[::-1], style="solid", colors=[level_colours[level % 10] for level in levels[::-1]])
    handles = [_style_handle(f"{_level_name(level)}: {int((levels == level).sum())}", "solid",
                             level_colours[level % 10]) for level in np.unique(levels)]
    _legend(ax, handles, outside=True, title="anchor's level")
    low, high = (float(scores[order].min()), float(scores[order].max())) if len(order) else (0.0, 0.0)
    ax.set_title(f"Top {len(order)} of {len(scores)} proposals (objectness {low:.2f} to {high:.2f})", fontsize=10)
    return fig


# RoI heads ------------------------------------------------------------------------------------------


def draw_roi_refinement(trace, i: int = 0, top_k: int = 20, class_names: Sequence[str] | None = None,
                        captions: int = 5) -> Figure:
    """The box head's class-specific refinement: the ``top_k`` RoIs by their best object-class
    score (dotted) and the box the head moves each to for that class (solid, class colour), a
    line joining their centres; the best ``captions`` refined boxes get a ``"class score"``
    caption. In a training trace the RoIs are the sampled ones."""
    _check_image_index(trace, i)
    scores = trace.heads.class_scores[i]  # [R, K]
    best_score, best_class = scores[:, 1:].max(dim=1)  # the most likely object class (not background)
    best_class = best_class + 1
    order = best_score.argsort(descending=True, stable=True)[:top_k]
    rois = to_numpy(trace.heads.proposals[i][order])
    refined = to_numpy(trace.heads.refined_boxes[i][order, best_class[order]])
    labels = to_numpy(best_class[order])
    palette = class_colors(scores.shape[1])
    colours = [tuple(palette[label]) for label in labels]
    fig, ax = _image_figure(trace, i, width=7.5)
    draw_boxes(ax, rois, style="dotted", colors=colours)
    draw_boxes(ax, refined, style="solid", colors=colours)
    captioned = min(len(order), captions)  # more captions than a few would hide the boxes
    for (x0, y0, _, _), label, score, colour in zip(refined[:captioned], labels, to_numpy(best_score[order]), colours):
        ax.text(x0, y0, _caption(label, score, class_names), color="white", fontsize=8, va="top", clip_on=True,
                bbox=dict(facecolor=colour, edgecolor="none", alpha=0.75, pad=1))
    _centre_lines(ax, rois, refined, colours)
    handles = [_style_handle("RoI", "dotted"), _style_handle("refined for its class", "solid")]
    handles += [_style_handle(_class_name(label, class_names), "solid", tuple(palette[label]))
                for label in np.unique(labels)]
    _legend(ax, handles, outside=True)
    ax.set_title(f"Box head: the top {len(order)} of {len(scores)} RoIs (dotted)\n"
                 "refined for their most likely class (solid)", fontsize=10)
    return fig


def _kept_candidates(trace, i: int) -> torch.Tensor:
    """``[C]`` bool: which of the pre-NMS candidates became detections. A candidate is one (RoI,
    class) pair, so it is kept when a detection came from the same RoI with the same class."""
    candidates = trace.heads.pre_nms[i]
    num_classes = trace.heads.class_scores[i].shape[1]
    candidate_keys = candidates["rois"] * num_classes + candidates["labels"]
    detection_keys = trace.heads.detection_rois[i] * num_classes + trace.heads.detections[i]["labels"]
    return torch.isin(candidate_keys, detection_keys)


def draw_class_nms(trace, i: int = 0, class_names: Sequence[str] | None = None) -> Figure:
    """Per-class NMS of the box head (inference trace): one panel per class that has candidates
    above the score threshold; suppressed candidates faint, kept detections solid with scores."""
    _check_image_index(trace, i)
    _need_inference(trace, "draw_class_nms")
    candidates = trace.heads.pre_nms[i]
    kept = to_numpy(_kept_candidates(trace, i))
    boxes, labels, scores = (to_numpy(candidates[key]) for key in ("boxes", "labels", "scores"))
    classes = np.unique(labels)
    cols = min(max(len(classes), 1), 3)
    rows = -(-max(len(classes), 1) // cols)
    fig = _new_figure(3.3 * cols, 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    if len(classes) == 0:
        show_image(axes[0], trace.image(i), title="No candidates above the score threshold")
    palette = class_colors(trace.heads.class_scores[i].shape[1])
    for ax, label in zip(axes, classes):
        show_image(ax, trace.image(i))
        ours = labels == label
        colour = tuple(palette[label])
        draw_boxes(ax, boxes[ours & ~kept], style="faint", colors=colour)
        draw_boxes(ax, boxes[ours & kept], scores=scores[ours & kept], style="solid", colors=colour)
        ax.set_title(f"{_class_name(int(label), class_names)}: {int(ours.sum())} candidates → "
                     f"{int((ours & kept).sum())} kept", fontsize=10)
    for ax in axes[len(classes) or 1:]:
        ax.set_visible(False)
    fig.suptitle("Per-class NMS: candidates faint, kept detections solid", fontsize=11)
    return fig


# Masks ----------------------------------------------------------------------------------------------


def _mask_panel(ax: Axes, values: np.ndarray, kind: str, title: str | None):
    """One 28 x 28 map: ``kind`` "logits" (diverging, centred at 0), "probability" or "target" (0..1)."""
    if kind == "logits":
        bound = max(float(np.abs(values).max()), 1e-6)
        image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
    else:
        image = ax.imshow(values, cmap="viridis" if kind == "probability" else "gray", vmin=0.0, vmax=1.0,
                          interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, shrink=0.85).ax.tick_params(labelsize=8)


def _nothing_to_show(fig: Figure, panels, trace, i: int, message: str) -> Figure:
    """An empty mask figure: the image alone, titled with why there is nothing else."""
    show_image(panels[0], trace.image(i))
    for ax in panels[1:]:
        ax.set_visible(False)
    fig.suptitle(message, fontsize=11)
    return fig


def _choose(count: int, chosen, max_rows: int, what: str) -> list[int]:
    if chosen is None:
        return list(range(min(count, max_rows)))
    chosen = [int(k) for k in np.atleast_1d(to_numpy(chosen))]
    for k in chosen:
        if not 0 <= k < count:
            raise ValueError(f"{what} index {k} is out of range: there are {count}")
    return chosen


def draw_mask_logits(trace, i: int = 0, detections=None, class_names: Sequence[str] | None = None,
                     max_rows: int = 4) -> Figure:
    """The mask head's output for each detection, one row each: its 28 x 28 logits for its own
    class (diverging colours, 0 = white), their sigmoid probability, and the mask pasted at full
    size on the image (original pixels, with the box).

    ``detections``: indices of the detections to show (default: the first ``max_rows``, best
    first). A training trace has no detections: it shows the mask targets instead
    (:func:`draw_mask_targets`, ``detections`` then picks positive RoIs).
    """
    _check_image_index(trace, i)
    if trace.heads.detection_mask_logits is None:
        return draw_mask_targets(trace, i, rois=detections, class_names=class_names, max_rows=max_rows)
    found = trace.detections[i]
    rows = _choose(len(found["boxes"]), detections, max_rows, "detection")
    fig = _new_figure(9.0, 2.3 * max(len(rows), 1) + 0.4)
    axes = fig.subplots(max(len(rows), 1), 3, squeeze=False)
    if not rows:
        return _nothing_to_show(fig, axes[0], trace, i, "No detections in this image")
    height, width = trace.original_sizes[i]
    palette = class_colors(trace.heads.mask_logits.shape[1])
    for row, d in zip(axes, rows):
        logits = to_numpy(trace.heads.detection_mask_logits[i][d])
        label, score = int(found["labels"][d]), float(found["scores"][d])
        name = _class_name(label, class_names)
        _mask_panel(row[0], logits, "logits", f"logits of '{name}' (28×28)")
        row[0].set_ylabel(f"detection {d}\n{name} {score:.2f}", fontsize=9)
        _mask_panel(row[1], 1 / (1 + np.exp(-logits)), "probability", "probability (sigmoid)")
        show_image(row[2], trace.image(i), extent=(0, width, height, 0))
        row[2].set_title("pasted on the image (> 0.5)", fontsize=9)
        draw_masks(row[2], found["masks"][d : d + 1], colors=[tuple(palette[label])])
        draw_boxes(row[2], found["boxes"][d : d + 1], style="solid", colors=[tuple(palette[label])])
    fig.suptitle("Mask head: 28×28 logits per detection, and the pasted mask", fontsize=11)
    return fig


def draw_mask_targets(trace, i: int = 0, rois=None, class_names: Sequence[str] | None = None,
                      max_rows: int = 4) -> Figure:
    """Training trace: for each positive RoI (one row each) its 28 x 28 mask target (the object's
    mask cut out at the RoI), the predicted logits of the target's class and their probability,
    and the RoI (dotted) with its object (dashed) on the image.

    ``rois``: which positive RoIs (indices into ``trace.heads.mask_rois[i]``), default the first
    ``max_rows``.
    """
    _check_image_index(trace, i)
    _need_training(trace, "draw_mask_targets")
    heads = trace.heads
    positives = heads.mask_rois[i]
    offset = sum(len(r) for r in heads.mask_rois[:i])  # mask_logits runs over all images' positives
    rows = _choose(len(positives), rois, max_rows, "positive RoI")
    fig = _new_figure(10.0, 2.3 * max(len(rows), 1) + 0.4)
    axes = fig.subplots(max(len(rows), 1), 4, squeeze=False)
    if not rows:
        return _nothing_to_show(fig, axes[0], trace, i, "No positive RoIs in this image: no mask targets")
    palette = class_colors(heads.mask_logits.shape[1])
    for row, k in zip(axes, rows):
        roi = int(positives[k])
        label = int(heads.sampled_labels[i][roi])
        name = _class_name(label, class_names)
        _mask_panel(row[0], to_numpy(heads.mask_targets[i][k]), "target", "target (28×28)")
        row[0].set_ylabel(f"positive RoI {k}\n{name}", fontsize=9)
        logits = to_numpy(heads.mask_logits[offset + k, label])
        _mask_panel(row[1], logits, "logits", f"logits of '{name}'")
        _mask_panel(row[2], 1 / (1 + np.exp(-logits)), "probability", "probability (sigmoid)")
        show_image(row[3], trace.image(i))
        row[3].set_title("RoI (dotted), object (dashed)", fontsize=9)
        draw_boxes(row[3], heads.proposals[i][roi : roi + 1], style="dotted", colors=[tuple(palette[label])],
                   linewidth=2.0)
        if trace.targets is not None:
            obj = int(heads.matched_objects[i][roi])
            _rectangles(row[3], to_numpy(trace.targets[i]["boxes"][obj : obj + 1]), ["white"], "--", 1.5,
                        gid="ground truth")
    fig.suptitle("Mask targets of the positive RoIs beside the predicted logits of their class", fontsize=11)
    return fig


# Activations ------------------------------------------------------------------------------------------


def draw_activations(trace, which: str = "C", i: int = 0, channels: int = 8) -> Figure:
    """Activation grids: one row per level of the ResNet body (``which="C"``: C2..C5) or of the FPN
    (``"P"``: P2..P6), showing the ``channels`` channels with the highest mean activation, each
    on its own colour scale. Row titles give the level, its shape and stride."""
    _check_image_index(trace, i)
    if which not in ("C", "P"):
        raise ValueError(f'which must be "C" (ResNet stages) or "P" (FPN levels), got {which!r}')
    maps = trace.stages if which == "C" else trace.features
    strides = _strides(trace, maps)
    fig = _new_figure(10.0, 1.65 * len(maps) + 0.5)
    rows = fig.subfigures(len(maps), 1)
    for level, (row, values, (sy, sx)) in enumerate(zip(np.atleast_1d(rows), maps, strides)):
        activation = values[i]  # [C, H, W]
        means = activation.mean(dim=(1, 2))
        top = means.argsort(descending=True, stable=True)[:channels]
        axes = np.atleast_1d(row.subplots(1, channels))
        for ax, channel in zip(axes, top.tolist()):
            ax.imshow(to_numpy(activation[channel]), cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"ch {channel} (mean {float(means[channel]):.2g})", fontsize=8)
        for ax in axes[len(top):]:
            ax.set_visible(False)
        count, height, width = activation.shape
        row.suptitle(f"{which}{level + 2}: [{count}, {height}×{width}], stride {sx}: "
                     f"the {len(top)} channels with the highest mean activation", fontsize=9)
    what = "ResNet body, C2–C5" if which == "C" else "FPN, P2–P6"
    fig.suptitle(f"Activations of the {what} (each panel on its own colour scale)", fontsize=11)
    return fig


# Weights --------------------------------------------------------------------------------------------

DEAD_STD = 1e-8  # a tensor whose values all but equal one another has stopped carrying information
OVERFLOW_MAGNITUDE = 1e3  # weights this large in a trained network mean training diverged


def weight_statistics(model: torch.nn.Module) -> list[dict]:
    """One row per weight tensor of ``model``: its parameters and floating-point buffers
    (BatchNorm's running statistics), as the Keras inspect_weights notebook tabulates them.

    Each row: ``name``, ``shape`` (tuple), ``min``, ``max``, ``mean``, ``std`` (population std, as
    floats) and ``flags``, a list holding ``"dead"`` when the tensor is all zero or (with more
    than one element) its std is below 1e-8, and ``"overflow"`` when it holds a non-finite value
    or one of magnitude above 1e3.
    """
    named = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    rows = []
    for name, tensor in named:
        values = tensor.detach().to("cpu", torch.float64).reshape(-1)
        if values.numel() == 0:
            rows.append(dict(name=name, shape=tuple(tensor.shape), min=float("nan"), max=float("nan"),
                             mean=float("nan"), std=float("nan"), flags=["empty"]))
            continue
        std = float(values.std(unbiased=False))
        flags = []
        if bool((values == 0).all()) or (values.numel() > 1 and std < DEAD_STD):
            flags.append("dead")
        if not bool(torch.isfinite(values).all()) or bool((values.abs() > OVERFLOW_MAGNITUDE).any()):
            flags.append("overflow")
        rows.append(dict(name=name, shape=tuple(tensor.shape), min=float(values.min()), max=float(values.max()),
                         mean=float(values.mean()), std=std, flags=flags))
    return rows


_TABLE_COLUMNS = ("name", "shape", "min", "max", "mean", "std", "flags")


def _table_cells(row: dict) -> list[str]:
    return [row["name"], "×".join(str(n) for n in row["shape"]) or "scalar",
            *(f"{row[key]:.4g}" for key in ("min", "max", "mean", "std")), ", ".join(row["flags"])]


def format_weight_table(rows: list[dict]) -> str:
    """The rows of :func:`weight_statistics` as a plain-text table, one tensor a line."""
    cells = [list(_TABLE_COLUMNS)] + [_table_cells(row) for row in rows]
    widths = [max(len(line[c]) for line in cells) for c in range(len(_TABLE_COLUMNS))]
    lines = []
    for k, line in enumerate(cells):
        text = "  ".join(cell.ljust(width) if c < 2 or c == 6 else cell.rjust(width)
                         for c, (cell, width) in enumerate(zip(line, widths)))
        lines.append(text.rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def draw_weight_table(rows: list[dict], max_rows: int | None = None) -> Figure:
    """The rows of :func:`weight_statistics` as a matplotlib table; flagged tensors in red.

    ``max_rows``: draw only the first ``max_rows`` rows (the title says how many there are);
    ``None`` draws all (a full ResNet-50 Mask R-CNN has about 400 -- filter the list first).
    """
    shown = rows if max_rows is None else rows[:max_rows]
    fig = _new_figure(10.0, 0.22 * (len(shown) + 1) + 0.7)
    ax = fig.subplots()
    ax.set_axis_off()
    flagged = sum(bool(row["flags"]) for row in rows)
    cells = [_table_cells(row) for row in shown] or [["(no weights)"] + [""] * (len(_TABLE_COLUMNS) - 1)]
    table = ax.table(cellText=cells, colLabels=list(_TABLE_COLUMNS), loc="upper center", cellLoc="right",
                     colWidths=[0.40, 0.14, 0.09, 0.09, 0.09, 0.09, 0.10])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (r, c), cell in table.get_celld().items():
        cell.set_height(1.0 / (len(cells) + 1))
        if c == 0 or c == 6:
            cell.get_text().set_horizontalalignment("left")
        if r == 0:
            cell.set_facecolor("0.85")
            cell.get_text().set_fontweight("bold")
        elif r - 1 < len(shown) and shown[r - 1]["flags"]:
            cell.set_facecolor("#f4b6b6")
    more = f", showing the first {len(shown)}" if len(shown) < len(rows) else ""
    ax.set_title(f"Weight statistics: {len(rows)} tensors{more}; {flagged} flagged (dead: std < {DEAD_STD:g} or "
                 f"all zero; overflow: non-finite or |w| > {OVERFLOW_MAGNITUDE:g})", fontsize=9)
    return fig


def weight_layers(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(module name, weight)`` of every convolution (plain or transposed) and linear layer, in
    the model's order: the layers :func:`draw_weight_histograms` draws."""
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    return [(name, module.weight) for name, module in model.named_modules() if isinstance(module, kinds)]


def draw_weight_histograms(model: torch.nn.Module, max_layers: int | None = None, bins: int = 60) -> Figure:
    """A histogram of the *whole* weight tensor of every convolution and linear layer (the Keras
    notebook histogrammed only a slice), four to a row, each titled by the layer's name, shape
    and std. ``max_layers``: only the first that many layers."""
    layers = weight_layers(model)[:max_layers]
    cols = 4
    rows = max(-(-len(layers) // cols), 1)
    fig = _new_figure(10.0, 1.45 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, weight) in zip(axes, layers):
        values = weight.detach().to("cpu", torch.float64).reshape(-1).numpy()
        finite = values[np.isfinite(values)]
        counts, edges = np.histogram(finite, bins=bins) if len(finite) else (np.zeros(1), np.array([0.0, 1.0]))
        ax.stairs(counts, edges, fill=True, color="tab:blue")
        ax.set_title(f"{name}\n{'×'.join(str(n) for n in weight.shape)}, std {values.std():.3g}", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
        ax.xaxis.get_offset_text().set_fontsize(8)
        ax.set_yticks([])
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    fig.suptitle(f"Weight histograms of {len(layers)} convolution and linear layers (whole tensors)", fontsize=11)
    return fig


# Samples, matches, IoU grids and PR curves ------------------------------------------------------------


def draw_top_masks(image, target: dict, class_names: Sequence[str] | None = None, limit: int = 4) -> Figure:
    """The image, then for each of its ``limit`` most frequent classes (most objects first; ties:
    larger total mask area, then smaller label) the union of that class's masks (Keras'
    ``display_top_masks``). ``target``: ``labels [N]`` and ``masks [N, H, W]``."""
    labels = to_numpy(target["labels"]).reshape(-1).astype(int)
    masks = to_numpy(target["masks"]).astype(bool)
    if masks.ndim == 4:
        masks = masks[:, 0]
    if len(masks) != len(labels):
        raise ValueError(f"target has {len(labels)} labels but {len(masks)} masks")
    classes, counts = np.unique(labels, return_counts=True)
    areas = np.array([masks[labels == c].sum() for c in classes])
    top = classes[np.lexsort((classes, -areas, -counts))][:limit]  # last key sorts first
    fig = _new_figure(2.3 * (1 + max(len(top), 1)), 2.7)
    axes = np.atleast_1d(fig.subplots(1, 1 + max(len(top), 1)))
    show_image(axes[0], image)
    axes[0].set_title(f"image ({len(labels)} objects)", fontsize=9)
    if len(top) == 0:
        axes[1].set_axis_off()
        axes[1].set_title("no objects", fontsize=9)
    for ax, label in zip(axes[1:], top):
        union = masks[labels == label].any(axis=0)
        ax.imshow(union, cmap="Blues", vmin=0, vmax=1, interpolation="nearest",
                  extent=(0, union.shape[1], union.shape[0], 0))
        ax.set_xticks([])
        ax.set_yticks([])
        count = int((labels == label).sum())
        ax.set_title(f"{_class_name(int(label), class_names)} ({count} object{'s' if count != 1 else ''})", fontsize=9)
    fig.suptitle("Masks by class: the union of each frequent class's masks", fontsize=10)
    return fig


@dataclass(frozen=True)
class BoxMatches:
    """Ground truth matched to predictions on one image (:func:`match_boxes`).

    ``pairs [M, 2]``: ``(gt index, prediction index)`` of each match, in the order the greedy pass
    made them (best prediction first); ``ious [M]``: their IoUs; ``missed``: indices of unmatched
    ground-truth boxes; ``false_positives``: indices of unmatched predictions (ascending).
    """

    pairs: np.ndarray
    ious: np.ndarray
    missed: np.ndarray
    false_positives: np.ndarray


def match_boxes(gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores, iou_threshold: float = 0.5) -> BoxMatches:
    """Match predictions to ground truth on one image, greedily, as a picture needs it.

    Predictions are taken best score first; each takes the unmatched ground-truth box *of its
    own class* with the highest IoU, if that IoU is ``>= iou_threshold``; otherwise it is a false
    positive. Ground truth left over is missed. (COCO's evaluation adds crowd regions, ignored
    objects, size ranges and ten thresholds: see ``maskrcnn_edu.evaluate``; this is the plain rule
    for drawing one image.) The IoUs are one vectorised ``box_iou``; the greedy pass is a loop over
    predictions because each match removes a ground-truth box from the next one's choice.
    """
    from ..boxes import box_iou

    gt_boxes = torch.as_tensor(to_numpy(gt_boxes), dtype=torch.float64).reshape(-1, 4)
    pred_boxes = torch.as_tensor(to_numpy(pred_boxes), dtype=torch.float64).reshape(-1, 4)
    gt_labels, pred_labels = to_numpy(gt_labels).reshape(-1), to_numpy(pred_labels).reshape(-1)
    pred_scores = to_numpy(pred_scores).reshape(-1)
    if len(gt_labels) != len(gt_boxes):
        raise ValueError(f"gt_labels has {len(gt_labels)} entries for {len(gt_boxes)} gt_boxes")
    if not len(pred_labels) == len(pred_scores) == len(pred_boxes):
        raise ValueError(f"pred_boxes, pred_labels and pred_scores differ in length: "
                         f"{len(pred_boxes)}, {len(pred_labels)}, {len(pred_scores)}")
    ious = box_iou(gt_boxes, pred_boxes).numpy() if len(gt_boxes) and len(pred_boxes) else np.zeros(
        (len(gt_boxes), len(pred_boxes)))
    return greedy_match(ious, gt_labels, pred_labels, pred_scores, iou_threshold)


def greedy_match(ious: np.ndarray, gt_labels, pred_labels, pred_scores, iou_threshold: float = 0.5) -> BoxMatches:
    """The greedy pass of :func:`match_boxes` on any IoU matrix ``ious [G, P]`` (boxes or masks).

    Predictions best score first (stable on ties); each takes the free ground truth of its own
    class with the highest IoU if it is ``>= iou_threshold``. A loop over predictions, because each
    match takes a ground truth away from the next one's choice.
    """
    gt_labels, pred_labels = np.asarray(gt_labels).reshape(-1), np.asarray(pred_labels).reshape(-1)
    candidates = np.where(gt_labels[:, None] == pred_labels[None, :], ious, -1.0)  # [G, P]; other classes never match
    taken = np.zeros(len(gt_labels), dtype=bool)
    pairs, pair_ious = [], []
    for p in np.argsort(-np.asarray(pred_scores).reshape(-1), kind="stable"):
        column = np.where(taken, -1.0, candidates[:, p])
        if len(column) and column.max() >= iou_threshold:
            g = int(column.argmax())
            taken[g] = True
            pairs.append((g, int(p)))
            pair_ious.append(float(ious[g, p]))
    matched_predictions = {p for _, p in pairs}
    return BoxMatches(
        pairs=np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        ious=np.asarray(pair_ious, dtype=np.float64),
        missed=np.where(~taken)[0],
        false_positives=np.asarray([p for p in range(len(pred_labels)) if p not in matched_predictions], dtype=np.int64),
    )


MATCH_COLOURS = {"matched": "tab:green", "missed": "tab:red", "false positive": "tab:orange"}


def draw_matches(image, gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores, iou_threshold: float = 0.5,
                 class_names: Sequence[str] | None = None) -> Figure:
    """Ground truth vs prediction on one image (matching by :func:`match_boxes`): matched pairs
    green (ground truth dashed, prediction solid), missed ground truth red (dashed), false
    positives orange (solid, with their scores). Counts in the title."""
    result = match_boxes(gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores, iou_threshold)
    gt_boxes, pred_boxes = to_numpy(gt_boxes).reshape(-1, 4), to_numpy(pred_boxes).reshape(-1, 4)
    gt_labels, pred_labels = to_numpy(gt_labels).reshape(-1), to_numpy(pred_labels).reshape(-1)
    pred_scores = to_numpy(pred_scores).reshape(-1)
    fig = _new_figure(7.5, 6.5)
    ax = fig.subplots()
    show_image(ax, image)
    green, red, orange = MATCH_COLOURS["matched"], MATCH_COLOURS["missed"], MATCH_COLOURS["false positive"]
    matched_gt, matched_pred = result.pairs[:, 0], result.pairs[:, 1]
    _rectangles(ax, gt_boxes[matched_gt], [green] * len(matched_gt), "--", 1.5, gid="matched ground truth")
    draw_boxes(ax, pred_boxes[matched_pred], pred_labels[matched_pred], pred_scores[matched_pred], class_names,
               colors=green)
    _rectangles(ax, gt_boxes[result.missed], [red] * len(result.missed), "--", 2.0, gid="missed")
    for (x0, y0, _, _), label in zip(gt_boxes[result.missed], gt_labels[result.missed]):
        ax.text(x0, y0, f"missed {_class_name(int(label), class_names)}", color="white", fontsize=8, va="top",
                clip_on=True, bbox=dict(facecolor=red, edgecolor="none", alpha=0.75, pad=1))
    fp = result.false_positives
    draw_boxes(ax, pred_boxes[fp], pred_labels[fp], pred_scores[fp], class_names, colors=orange)
    ax.set_title(f"{len(result.pairs)} matched, {len(result.missed)} missed, {len(fp)} false positive"
                 f"{'s' if len(fp) != 1 else ''} (same class, IoU ≥ {iou_threshold:g})", fontsize=10)
    _legend(ax, [_style_handle("ground truth, matched", colour=green, linestyle="--"),
                 _style_handle("prediction, matched", "solid", green),
                 _style_handle("ground truth, missed", colour=red, linestyle="--"),
                 _style_handle("false positive", "solid", orange)], outside=True)
    return fig


def draw_iou_grid(gt_boxes, pred_boxes, gt_labels=None, pred_labels=None,
                  class_names: Sequence[str] | None = None) -> Figure:
    """The IoU of every (ground truth, prediction) pair as an annotated heat map: rows ground
    truth, columns predictions, each cell printing its IoU to two decimals (grids of more than
    400 cells are left unannotated)."""
    from ..boxes import box_iou

    gt = torch.as_tensor(to_numpy(gt_boxes), dtype=torch.float64).reshape(-1, 4)
    pred = torch.as_tensor(to_numpy(pred_boxes), dtype=torch.float64).reshape(-1, 4)
    ious = box_iou(gt, pred).numpy() if len(gt) and len(pred) else np.zeros((len(gt), len(pred)))
    rows, cols = ious.shape
    fig = _new_figure(2.4 + 0.6 * max(cols, 1), 1.6 + 0.45 * max(rows, 1))
    ax = fig.subplots()
    image = ax.imshow(ious if ious.size else np.zeros((1, 1)), cmap="Greens", vmin=0.0, vmax=1.0)
    if ious.size and ious.size <= 400:
        for (r, c), value in np.ndenumerate(ious):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value > 0.6 else "black")

    def names(count, labels, prefix):
        labels = None if labels is None else to_numpy(labels).reshape(-1)
        return [f"{prefix} {k}" + ("" if labels is None else f": {_class_name(int(labels[k]), class_names)}")
                for k in range(count)]

    ax.set_yticks(range(rows), names(rows, gt_labels, "gt"), fontsize=8)
    ax.set_xticks(range(cols), names(cols, pred_labels, "pred"), fontsize=8, rotation=45, ha="right")
    ax.set_ylabel("ground truth")
    ax.set_xlabel("predictions")
    fig.colorbar(image, ax=ax, shrink=0.8, label="IoU")
    ax.set_title(f"IoU of {rows} ground-truth × {cols} predicted boxes", fontsize=10)
    return fig


def draw_pr_curve(recall, precision, ax: Axes | None = None, interpolated=None, label: str | None = None):
    """A precision-recall curve: the raw ``(recall, precision)`` points of a ranked list as a step
    line, and, if given, the ``interpolated`` envelope (precision at recall levels evenly spaced
    over 0..1, COCO's 101) dashed, with its mean (the AP) in the legend.

    Returns the ``Axes`` when ``ax`` is given (several curves on one plot), else a new ``Figure``.
    """
    recall = to_numpy(recall).reshape(-1).astype(float)
    precision = to_numpy(precision).reshape(-1).astype(float)
    if len(recall) != len(precision):
        raise ValueError(f"recall has {len(recall)} points but precision has {len(precision)}")
    fig = None
    if ax is None:
        fig = _new_figure(5.5, 4.2)
        ax = fig.subplots()
    name = label or "precision"
    (line,) = ax.step(recall, precision, where="post", linewidth=1.5, label=f"{name} (raw)")
    if interpolated is not None:
        interpolated = to_numpy(interpolated).reshape(-1).astype(float)
        levels = np.linspace(0.0, 1.0, len(interpolated))
        ax.plot(levels, interpolated, linestyle="--", color=line.get_color(), linewidth=1.2,
                label=f"{name}, interpolated (AP {interpolated.mean():.3f})")
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    if fig is not None:
        ax.set_title("Precision–recall curve", fontsize=10)
        return fig
    return ax
