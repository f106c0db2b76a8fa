"""Drawing primitives: colours and names (classes, scores, FPN levels), an image, boxes, captions,
masks, a feature map, RoIPool bins and RoIAlign's sampling points, detections, a sample's masks by
class. Each draws on the ``ax`` it is given and returns it."""
from __future__ import annotations

import colorsys
from typing import Sequence

import matplotlib
import matplotlib.collections
import matplotlib.lines
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .. import roi_ops
from .captions import caption_placer

__all__ = [
    "to_numpy", "describe", "class_colors", "class_name", "score_colours", "score_scale", "LEVEL_NAMES",
    "level_name", "level_colour", "show_image", "draw_boxes", "draw_captions", "draw_masks", "widen_view",
    "zoom_view", "draw_feature_map", "draw_box", "roi_align_box", "draw_roi_pool_bins",
    "draw_sampling_points", "draw_detections", "draw_top_masks",
]


def to_numpy(values) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like -> a NumPy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


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
    low, high, mean = values.min().item(), values.max().item(), values.mean().item()
    summary = f"{head}  min {low:.4g}  max {high:.4g}  mean {mean:.4g}"
    if not bool(finite.all()):
        summary += f"  ({int((~finite).sum())} non-finite)"
    return summary


# Colours and names --------------------------------------------------------------------------------


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


def class_name(label: int, class_names: Sequence[str] | None, unnamed: str = "class {label}") -> str:
    """``class_names[label]``, or ``unnamed`` filled in where there is no such name (captions on
    boxes, short of room, pass ``"{label}"``: the bare number)."""
    label = int(label)
    named = class_names is not None and 0 <= label < len(class_names)
    return class_names[label] if named else unnamed.format(label=label)


def score_colours(scores, cmap: str = "viridis", fade: bool = False) -> list[tuple]:
    """One RGBA colour per score in 0..1 (``scores [N]``) on the colour map ``cmap``.

    ``fade``: low scores also more transparent (opacity 0.3 .. 1), so that hundreds of weak
    boxes do not hide the strong ones. :func:`score_scale` is the matching colour bar's scale.
    """
    colours = score_scale(cmap).to_rgba(np.clip(to_numpy(scores).astype(float), 0.0, 1.0))  # [N, 4]
    if fade:
        colours[:, 3] = 0.3 + 0.7 * np.clip(to_numpy(scores), 0.0, 1.0)
    return [tuple(c) for c in colours.reshape(-1, 4)]


def score_scale(cmap: str = "viridis") -> matplotlib.cm.ScalarMappable:
    """The 0..1 scale of :func:`score_colours`, for ``figure.colorbar``."""
    return matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0.0, 1.0), matplotlib.colormaps[cmap])


LEVEL_NAMES = ("P2", "P3", "P4", "P5", "P6")  # the FPN levels the RPN reads; level index 0 = P2


def level_name(level: int) -> str:
    """An FPN level index (0 = P2, as the anchors and the RPN count them) -> its name."""
    return LEVEL_NAMES[level] if 0 <= level < len(LEVEL_NAMES) else f"level {level}"


def level_colour(level: int) -> tuple:
    """The colour of an FPN level index (0 = P2) in every drawing: matplotlib's ``tab10``."""
    cycle = matplotlib.colormaps["tab10"].colors
    return cycle[int(level) % len(cycle)]


# Images, boxes, captions, masks -------------------------------------------------------------------


def _image_pixels(image) -> np.ndarray:
    """``[3, H, W]`` tensor (channels first, torch's convention) or ``[H, W, 3]`` array in 0..1 ->
    ``[H, W, 3]`` NumPy array. One-channel images become grey RGB."""
    channels_first = isinstance(image, torch.Tensor)
    pixels = to_numpy(image)
    if not channels_first and pixels.ndim == 3 and pixels.shape[-1] not in (1, 3):
        channels_first = True  # a [3, H, W] array
    if pixels.ndim != 3 or (pixels.shape[0] if channels_first else pixels.shape[-1]) not in (1, 3):
        raise ValueError(f"image must be [3, H, W] (tensor) or [H, W, 3] (array), "
                         f"got shape {tuple(pixels.shape)}")
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


BOX_STYLES = {
    # style: (linestyle, alpha, linewidth factor). Anchors dotted, refined solid, suppressed faint.
    "solid": ("-", None, 1.0),  # alpha None: opaque, unless a colour carries its own alpha
    "dotted": (":", None, 1.0),
    "faint": ("-", 0.25, 0.5),
}


def _colour_list(colors, count: int, labels: np.ndarray | None) -> list:
    """One colour per box: given per box, one for all, by class label, or cycling through ``tab10``."""
    if colors is None:
        if labels is not None:
            palette = class_colors(int(labels.max()) + 1 if len(labels) else 1)
            return [tuple(palette[label]) for label in labels]
        cycle = matplotlib.colormaps["tab10"].colors
        return [cycle[k % len(cycle)] for k in range(count)]
    one_rgb = np.ndim(colors) == 1 and len(colors) in (3, 4) and not isinstance(colors[0], str)
    if isinstance(colors, str) or one_rgb:
        return [colors] * count  # one colour for every box
    colors = list(colors)
    if len(colors) != count:
        raise ValueError(f"colors has {len(colors)} entries for {count} boxes")
    return colors


def _rectangles(ax: Axes, boxes: np.ndarray, colours: list, linestyle, linewidth: float,
                alpha: float | None = None, gid: str | None = None) -> matplotlib.collections.PatchCollection:
    """Unfilled rectangles for ``boxes [N, 4]`` (x0, y0, x1, y1), added as one ``PatchCollection``
    (hundreds of boxes draw ten times faster than as separate patches); its ``gid`` names the style."""
    rectangles = [Rectangle((x0, y0), x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]
    collection = matplotlib.collections.PatchCollection(
        rectangles, facecolors="none", edgecolors=colours if len(colours) else "none", linestyles=linestyle,
        linewidths=linewidth, alpha=alpha, gid=gid)
    ax.add_collection(collection, autolim=False)
    return collection


def _caption(label, score, class_names) -> str:
    """``"name score"``, either part left out when it is ``None``."""
    parts = [] if label is None else [class_name(label, class_names, unnamed="{label}")]
    return " ".join(parts + ([] if score is None else [f"{float(score):.2f}"]))


def draw_captions(ax: Axes, boxes, texts: Sequence[str], colours: Sequence, alpha: float = 0.75,
                  above: bool = False) -> Axes:
    """Write ``texts[k]`` in white on ``colours[k]`` inside box ``k``'s top-left corner, or ``above``
    it (``boxes [N, 4]``); at drawing, :mod:`.captions` moves one that would hide another."""
    placer = caption_placer(ax)
    for box, text, colour in zip(to_numpy(boxes).reshape(-1, 4), texts, colours):
        placer.add(ax.text(box[0], box[1], text, color="white", fontsize=8, ha="left", clip_on=True,
                           bbox=dict(facecolor=colour, edgecolor="none", alpha=alpha, pad=1)), box, above)
    return ax


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
    ``"name score"`` inside its top-left corner (:func:`class_name`).
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
    if captions and (labels is not None or scores is not None):
        none = [None] * len(boxes)
        texts = [_caption(label, score, class_names) for label, score in
                 zip(none if labels is None else labels, none if scores is None else scores)]
        draw_captions(ax, boxes, texts, colours, alpha=0.75 * (alpha or 1.0))
    return ax


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


def widen_view(ax: Axes, boxes, margin: float = 0.0) -> Axes:
    """Widen an image's axes (y pointing down) to take in ``boxes [N, 4]`` too, ``margin`` pixels more."""
    boxes = to_numpy(boxes).reshape(-1, 4)
    if len(boxes):
        (x0, x1), (y1, y0) = ax.get_xlim(), ax.get_ylim()
        ax.set_xlim(min(x0, boxes[:, 0].min()) - margin, max(x1, boxes[:, 2].max()) + margin)
        ax.set_ylim(max(y1, boxes[:, 3].max()) + margin, min(y0, boxes[:, 1].min()) - margin)
    return ax


def zoom_view(ax: Axes, boxes, fraction: float = 0.3) -> Axes:
    """Zoom an image's axes (y pointing down) onto ``boxes [N, 4]``, with a margin of ``fraction`` of
    their larger side plus 2 pixels, so that a refinement of a few pixels shows."""
    boxes = to_numpy(boxes).reshape(-1, 4)
    (x0, y0), (x1, y1) = boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)
    margin = fraction * max(x1 - x0, y1 - y0) + 2
    ax.set_xlim(x0 - margin, x1 + margin)
    ax.set_ylim(y1 + margin, y0 - margin)
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


# Feature maps, RoIPool bins, RoIAlign's sampling points (chapter 01) ------------------------------


def draw_feature_map(ax: Axes, values=None, *, shape: tuple[int, int] | None = None, cmap: str = "Greys",
                     vmin: float | None = None, vmax: float | None = None, grid: bool = True,
                     colorbar: bool = False, title: str | None = None) -> Axes:
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


def draw_box(ax: Axes, box: Sequence[float], *, bins: tuple[int, int] | None = None, color: str = "C1",
             linestyle: str = "-", linewidth: float = 2.0, label: str | None = None) -> Axes:
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


def roi_align_box(box: Sequence[float], spatial_scale: float = 1.0,
                  aligned: bool = False) -> tuple[float, ...]:
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


# Detections and samples ---------------------------------------------------------------------------


def draw_detections(ax: Axes, image, detections: dict, class_names: Sequence[str] | None = None,
                    score_threshold: float = 0.5, mask_threshold: float = 0.5, alpha: float = 0.45,
                    by_class: bool = False, extent: tuple | None = None) -> Axes:
    """Draw ``image [3, H, W]`` (0..1) with the detections that score ``>= score_threshold``.

    ``detections``: as the model returns them for one image, ``boxes [D, 4]`` xyxy in pixels,
    ``labels [D]``, ``scores [D]`` and optionally ``masks [D, 1, H, W]`` (probabilities, shown
    where ``> mask_threshold``). Each detection gets a colour (by rank, or with ``by_class`` its
    class's, :func:`class_colors`): its mask tinted at ``alpha``, its box, and a ``"name score"``
    caption above it (:func:`class_name`). Where masks overlap, the higher-scoring detection's
    colour shows. Pixels as in :func:`show_image` (``extent``: the image stretched onto the
    detections' pixel grid, e.g. a resized image under detections in original pixels).
    """
    scores = to_numpy(detections["scores"])
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= score_threshold]  # kept detections, best first
    boxes, labels = to_numpy(detections["boxes"])[order], to_numpy(detections["labels"])[order]
    scores = scores[order]
    if by_class:
        colours = class_colors(int(labels.max(initial=0)) + 1)[labels]  # [K, 3]
    else:
        colours = np.asarray(matplotlib.colormaps["tab10"](np.arange(len(order)) % 10))[:, :3]  # [K, 3]
    show_image(ax, image, extent=extent)
    if "masks" in detections and len(order):
        masks = to_numpy(detections["masks"])[order, 0] > mask_threshold  # [K, H, W]
        height, width = masks.shape[1:]
        ax.imshow(_mask_overlay(masks, colours, alpha), extent=(0, width, height, 0))
    for (x0, y0, x1, y1), colour in zip(boxes, colours):  # a few patches, which callers may count
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
    texts = [_caption(label, score, class_names) for label, score in zip(labels, scores)]
    return draw_captions(ax, boxes, texts, colours, alpha=0.8, above=True)


def _new_figure(width: float, height: float, **kwargs) -> Figure:
    """A figure pyplot does not track (no leak when widgets redraw), constrained layout."""
    return Figure(figsize=(min(width, 10.0), height), layout="constrained", **kwargs)


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
        objects = f"{count} object{'s' if count != 1 else ''}"
        ax.set_title(f"{class_name(int(label), class_names)} ({objects})", fontsize=9)
    fig.suptitle("Masks by class: the union of each frequent class's masks", fontsize=10)
    return fig
