"""The chapter 02 explorer: which anchors become positive, ignored or negative.

Pick a Shapes image, an FPN level, an aspect ratio and the matcher's two IoU thresholds; the view
labels *all* anchors of the image with ``matching.Matcher`` exactly as the RPN does (every level
at once, since the low-quality rule looks for each object's best anchor over all of them), then
shows the anchors of the chosen level and ratio: positives and ignored ones as boxes, every
anchor's centre as a dot in its label's colour, and a histogram of their best IoU against the
thresholds. The numbers live in ``AnchorView``; ``anchor_explorer`` wraps the view in a widget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import ipywidgets as widgets
import matplotlib.lines
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from torch import Tensor

from ..anchors import AnchorGenerator
from ..boxes import box_iou
from ..config import shapes
from ..data import ShapesDataset
from ..matching import BACKGROUND, IGNORE, Matcher
from ..visualize import LEVEL_NAMES, draw_box, draw_boxes
from .shell import Explorer, View

__all__ = [
    "LABEL_COLOURS",
    "shapes_scene",
    "shapes_anchors",
    "draw_scene",
    "draw_anchor_verdicts",
    "draw_pyramid",
    "draw_cell_anchors_by_level",
    "draw_sampled_anchors",
    "AnchorView",
    "anchor_labels_view",
    "anchor_explorer",
]

# One colour per verdict, used for boxes, centre dots and histogram bars alike.
LABEL_COLOURS = {"positive": "#1a9641", "ignored": "#f39c12", "negative": "#d7191c"}
SHAPES_SEED = 3  # the held-out Shapes images the chapters use (the shipped model never trained on them)
NUM_IMAGES = 10


@lru_cache(maxsize=NUM_IMAGES)
def shapes_scene(index: int, seed: int = SHAPES_SEED) -> tuple[Tensor, Tensor]:
    """Shapes image ``index`` of ``ShapesDataset(NUM_IMAGES, seed)``: ``image [3, 128, 128]``,
    ``boxes [K, 4]``."""
    if not 0 <= index < NUM_IMAGES:
        raise ValueError(f"image index must be in 0..{NUM_IMAGES - 1}, got {index}")
    image, target = ShapesDataset(NUM_IMAGES, seed=seed)[index]
    return image, target["boxes"]


@lru_cache(maxsize=1)
def shapes_anchors(image_size: int = 128) -> tuple[Tensor, Tensor, Tensor]:
    """Every anchor of the Shapes preset on a square image, with where it comes from.

    Returns ``anchors [A, 4]`` (all levels, in the RPN's order), ``levels [A]`` (0 = P2 .. 4 = P6)
    and ``ratios [A]`` (its aspect ratio h / w). The feature maps are stand-ins of the right sizes
    (``image_size / stride``): the generator reads only their shapes.
    """
    config = shapes()
    generator = AnchorGenerator(config.anchor_sizes, config.aspect_ratios)
    grids = [image_size // 2 ** (level + 2) for level in range(len(LEVEL_NAMES))]  # strides 4..64
    per_level = generator((image_size, image_size), [torch.empty(1, 0, g, g) for g in grids])
    levels, ratios = [], []
    for level, level_anchors in enumerate(per_level):
        # Within a cell the anchors are ratio-major (all sizes of ratio 0, then of ratio 1, ...).
        sizes, level_ratios = config.anchor_sizes[level], config.aspect_ratios[level]
        cell_ratios = torch.tensor(level_ratios).repeat_interleave(len(sizes))  # [A_cell]
        levels.append(torch.full((len(level_anchors),), level))
        ratios.append(cell_ratios.repeat(len(level_anchors) // len(cell_ratios)))
    return torch.cat(per_level), torch.cat(levels), torch.cat(ratios)


@dataclass
class AnchorView(View):
    """The explorer's picture and caption, and the numbers behind them.

    ``matches [A]``: the Matcher's result for every anchor of the image (object index,
    ``BACKGROUND`` or ``IGNORE``); ``shown [A]`` (bool): the anchors of the chosen level and ratio;
    ``best_iou [A]``: each anchor's best IoU with any object. ``counts`` and ``total_counts``:
    ``{"positive", "ignored", "negative"}`` among the shown anchors and among all of them.
    ``unmatched_objects``: indices of the objects left without any positive anchor. ``valid`` is
    false when the thresholds are out of order (``low > high``); then nothing is matched.
    """

    valid: bool = True
    matches: Tensor | None = None
    shown: Tensor | None = None
    best_iou: Tensor | None = None
    counts: dict = field(default_factory=dict)
    total_counts: dict = field(default_factory=dict)
    unmatched_objects: list = field(default_factory=list)


def _count(matches: Tensor) -> dict:
    return {
        "positive": int((matches >= 0).sum()),
        "ignored": int((matches == IGNORE).sum()),
        "negative": int((matches == BACKGROUND).sum()),
    }


def draw_scene(ax, image: Tensor, boxes: Tensor) -> None:
    """``image [3, H, W]`` (0..1), washed out so that coloured anchors stand out, and its objects'
    ``boxes [K, 4]`` in black, in the package's pixel frame (pixel ``(i, j)`` is
    ``[j, j+1] x [i, i+1]``)."""
    pixels = (0.45 * image + 0.55).permute(1, 2, 0).numpy()
    height, width = pixels.shape[:2]
    ax.imshow(pixels, extent=(0, width, height, 0))
    for k, box in enumerate(boxes.tolist()):
        draw_box(ax, box, color="black", linewidth=1.5, label="object" if k == 0 else None)


def draw_anchor_verdicts(
    ax, anchors: Tensor, matches: Tensor, kinds=("negative", "ignored", "positive"),
    boxes_of=("ignored", "positive"),
) -> tuple[float, float, float, float]:
    """Draw ``anchors [A, 4]`` by their ``matches [A]`` (a Matcher's result), the ``kinds`` asked for.

    Every anchor gets a centre dot in its verdict's colour (``LABEL_COLOURS``); the kinds in
    ``boxes_of`` also their box: positives solid, ignored anchors dashed (negatives, thousands of
    them, never more than the dot). Returns the extent ``(x0, y0, x1, y1)`` of the boxes drawn (or
    of the dots, when no box is), so the caller can fit its limits.
    """
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).numpy()
    selections = {"negative": matches == BACKGROUND, "ignored": matches == IGNORE, "positive": matches >= 0}
    unknown = set(kinds) - set(selections)
    if unknown:
        raise ValueError(f"kinds must be among {tuple(selections)}, got {sorted(unknown)}")
    extent = [np.inf, np.inf, -np.inf, -np.inf]
    for name in ("negative", "ignored", "positive"):  # positives last: on top
        if name not in kinds:
            continue
        selected = selections[name]
        colour = LABEL_COLOURS[name]
        ax.scatter(centres[selected.numpy(), 0], centres[selected.numpy(), 1],
                   s=6 if name == "negative" else 14, color=colour, label=f"{name} ({int(selected.sum())})",
                   zorder=3)
        if name == "negative" or name not in boxes_of:
            continue  # thousands of negative boxes would hide everything; the centres say enough
        for box in anchors[selected].tolist():
            draw_box(ax, box, color=colour, linestyle="-" if name == "positive" else "--",
                     linewidth=2.0 if name == "positive" else 1.2)
            extent = [*np.minimum(extent[:2], box[:2]), *np.maximum(extent[2:], box[2:])]
    if not np.isfinite(extent).all() and len(centres):
        extent = [*centres.min(axis=0), *centres.max(axis=0)]
    return tuple(float(v) for v in extent)


def _principal_colours(feature_map: Tensor) -> np.ndarray:
    """``feature_map [C, H, W]`` -> ``[H, W, 3]`` in 0..1: each cell's features projected on the
    map's three principal components (one per colour channel), each stretched to 0..1."""
    cells = feature_map.flatten(1).T.double()  # [H*W, C]
    cells = cells - cells.mean(dim=0)
    _, _, directions = torch.linalg.svd(cells, full_matrices=False)  # rows: principal directions
    projected = cells @ directions[:3].T  # [H*W, 3]
    signs = torch.sign(projected.sum(dim=0) + 1e-12)  # a fixed sign per component: reruns agree
    projected = projected * signs
    low, high = projected.min(dim=0).values, projected.max(dim=0).values
    colours = (projected - low) / (high - low).clamp(min=1e-12)
    return colours.reshape(*feature_map.shape[-2:], 3).float().numpy()


def draw_pyramid(image: Tensor, boxes: Tensor, labels: Tensor, class_names, features,
                 anchor_sizes, point: tuple[float, float] | None = None,
                 figure: Figure | None = None) -> Figure:
    """The image with its objects, and the five FPN maps ``features`` (P2..P6, ``[1, C, H_l, W_l]``
    each) on top of one another's pixels: each cell coloured by its features' three principal
    components (similar colours, similar features, within one panel), one cell outlined in white
    (the cell holding ``point`` (x, y), default the image centre), the level's stride and anchor
    ``sizes`` in its title. Drawn into ``figure`` (e.g. pyplot's), else into a new one."""
    height, width = image.shape[-2:]
    x, y = (width / 2, height / 2) if point is None else point
    figure = Figure(figsize=(10, 7.0), layout="constrained") if figure is None else figure
    axes = figure.subplots(2, 3).flatten()
    axes[0].imshow(image.permute(1, 2, 0).numpy(), extent=(0, width, height, 0))
    draw_boxes(axes[0], boxes, labels=labels, class_names=class_names, colors="black", linewidth=2.0)
    axes[0].set_title(f"the image, {height} x {width} px", fontsize=10)
    for level, (ax, feature_map) in enumerate(zip(axes[1:], features)):
        rows, cols = feature_map.shape[-2:]
        stride = height // rows
        ax.imshow(_principal_colours(feature_map[0]), extent=(0, cols * stride, rows * stride, 0),
                  interpolation="nearest")
        row, col = min(int(y // stride), rows - 1), min(int(x // stride), cols - 1)
        draw_box(ax, (col * stride, row * stride, (col + 1) * stride, (row + 1) * stride), color="white",
                 linewidth=2.0)
        sizes = " and ".join(f"{size:g}" for size in anchor_sizes[level])
        ax.set_title(f"{LEVEL_NAMES[level]}: {rows} x {cols} cells, stride {stride}\n"
                     f"anchors {sizes} px", fontsize=10)
    for ax in axes:
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_xticks([0, width // 2, width])
        ax.set_yticks([0, height // 2, height])
        ax.tick_params(labelsize=8)
    return figure


# wide, square, tall: dark colours, to read on any image
RATIO_COLOURS = {0.5: "#1f4e9c", 1.0: "#b2182b", 2.0: "#5e3c99"}


def draw_cell_anchors_by_level(image: Tensor, boxes: Tensor, anchors_per_level, point: tuple[float, float],
                               aspect_ratios=(0.5, 1.0, 2.0), figure: Figure | None = None) -> Figure:
    """One panel per FPN level: the washed-out image and the anchors of the cell whose anchors are
    centred nearest ``point`` (x, y), coloured by aspect ratio (``RATIO_COLOURS``), solid for the
    level's first size and dashed for the next; each panel is widened to its own anchors, so the
    large ones of P6 do not shrink the small ones of P2. ``anchors_per_level``: ``[H_l*W_l*A, 4]``
    per level in the generator's cell-major order (ratio-major within a cell). Drawn into ``figure``
    (e.g. pyplot's), else into a new one."""
    height, width = image.shape[-2:]
    figure = Figure(figsize=(11.5, 3.4), layout="constrained") if figure is None else figure
    axes = figure.subplots(1, len(anchors_per_level))
    for level, (ax, level_anchors) in enumerate(zip(axes, anchors_per_level)):
        stride = 2 ** (level + 2)
        rows, cols = -(-height // stride), -(-width // stride)
        per_cell = len(level_anchors) // (rows * cols)
        sizes_per_ratio = per_cell // len(aspect_ratios)
        row = min(max(round(point[1] / stride), 0), rows - 1)
        col = min(max(round(point[0] / stride), 0), cols - 1)
        cell = level_anchors[(row * cols + col) * per_cell:(row * cols + col + 1) * per_cell]
        draw_scene(ax, image, boxes[:0])
        for a, box in enumerate(cell.tolist()):
            ratio, size_index = aspect_ratios[a // sizes_per_ratio], a % sizes_per_ratio
            draw_box(ax, box, color=RATIO_COLOURS.get(ratio, "black"), linewidth=2.0,
                     linestyle="-" if size_index == 0 else "--")
        ax.plot([col * stride], [row * stride], marker="+", color="black", markersize=10, markeredgewidth=2)
        ratios = np.repeat(aspect_ratios, sizes_per_ratio)
        sides = sorted({round(b[2] - b[0]) for b, r in zip(cell.tolist(), ratios) if r == 1.0})
        x0, y0 = min(0.0, cell[:, 0].min().item()), min(0.0, cell[:, 1].min().item())
        x1, y1 = max(float(width), cell[:, 2].max().item()), max(float(height), cell[:, 3].max().item())
        ax.set(xlim=(x0 - 4, x1 + 4), ylim=(y1 + 4, y0 - 4), aspect="equal")
        ax.tick_params(labelsize=7)
        ax.set_title(f"{LEVEL_NAMES[level]} (stride {stride}): {' and '.join(map(str, sides))} px",
                     fontsize=9)
    handles = [matplotlib.lines.Line2D([], [], color=colour, linewidth=2.0, label=f"h/w = {ratio:g}")
               for ratio, colour in RATIO_COLOURS.items()]
    handles += [matplotlib.lines.Line2D([], [], color="0.3", linewidth=2.0, linestyle=style, label=name)
                for style, name in (("-", "first size"), ("--", "1.5 x that"))]
    figure.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=9, frameon=False)
    return figure


def draw_sampled_anchors(ax, image: Tensor, boxes: Tensor, anchors: Tensor, positive: Tensor,
                         negative: Tensor) -> None:
    """The anchors one image's sample holds: ``negative`` (indices into ``anchors [A, 4]``) as thin
    boxes in the negative colour, ``positive`` as thick boxes in the positive colour, on the
    washed-out image with its objects' ``boxes`` in black; the view widened to every box."""
    draw_scene(ax, image, boxes)
    for indices, name, width in ((negative, "negative", 1.0), (positive, "positive", 2.5)):
        for k, box in enumerate(anchors[indices].tolist()):
            draw_box(ax, box, color=LABEL_COLOURS[name], linewidth=width,
                     label=f"{name} ({len(indices)})" if k == 0 else None)
    drawn = anchors[torch.cat([positive, negative])]
    height, width = image.shape[-2:]
    ax.set_xlim(min(0.0, drawn[:, 0].min().item()) - 3, max(float(width), drawn[:, 2].max().item()) + 3)
    ax.set_ylim(max(float(height), drawn[:, 3].max().item()) + 3, min(0.0, drawn[:, 1].min().item()) - 3)
    ax.set_aspect("equal")


def _no_matching(ax_image: Axes, ax_hist: Axes, picture: Tensor, what: str, high: float, low: float) -> str:
    """The view when the thresholds are out of order: the scene alone, and a caption that says why."""
    ax_image.set_title(f"{what}: no matching")
    ax_image.set_xlim(0, picture.shape[-1])
    ax_image.set_ylim(picture.shape[-2], 0)
    ax_hist.set_axis_off()
    return (f"The low threshold ({low:.2f}) is above the high one ({high:.2f}): an anchor cannot be "
            "both background and an object. Lower the low threshold or raise the high one.")


def _verdict_panel(ax: Axes, picture: Tensor, anchors: Tensor, matches: Tensor, title: str) -> None:
    """The scene with the shown anchors' verdicts, widened to every anchor box drawn."""
    x0, y0, x1, y1 = draw_anchor_verdicts(ax, anchors, matches)
    h, w = picture.shape[-2:]
    margin = 4
    ax.set_xlim(min(0, x0) - margin, max(w, x1) + margin)
    ax.set_ylim(max(h, y1) + margin, min(0, y0) - margin)  # y down
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, fontsize=8)


def _iou_histogram(ax: Axes, best_iou: Tensor, matches: Tensor, high: float, low: float) -> None:
    """Where the shown anchors' best IoUs fall against the two thresholds, stacked by verdict: a
    positive left of the high line is one the low-quality rule made."""
    ax.axvspan(0, low, color=LABEL_COLOURS["negative"], alpha=0.08)
    ax.axvspan(low, high, color=LABEL_COLOURS["ignored"], alpha=0.12)
    ax.axvspan(high, 1, color=LABEL_COLOURS["positive"], alpha=0.08)
    verdicts = {"negative": matches == BACKGROUND, "ignored": matches == IGNORE, "positive": matches >= 0}
    values = best_iou.numpy()
    ax.hist([values[v.numpy()] for v in verdicts.values()], bins=np.linspace(0, 1, 41), stacked=True,
            color=[LABEL_COLOURS[name] for name in verdicts])
    ax.axvline(low, color=LABEL_COLOURS["negative"], linestyle="--", label=f"low = {low:.2f}")
    ax.axvline(high, color=LABEL_COLOURS["positive"], linestyle="--", label=f"high = {high:.2f}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 1, 10, 100
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(bottom=0.7)  # a single anchor still shows as a bar
    ax.set_xlim(0, 1)
    ax.set(title="each shown anchor's best IoU with an object", xlabel="IoU", ylabel="anchors (log scale)")
    ax.legend(loc="upper right", fontsize=8)


def _caption(what: str, shown: Tensor, counts: dict, total_counts: dict, unmatched: list) -> str:
    """The view's caption: the shown anchors (``shown [S, 4]``), their verdicts and all anchors'."""
    sizes = (shown[:, 2:] - shown[:, :2]).round().int().tolist()  # each shown anchor's (w, h)
    shapes_shown = " and ".join(f"{w} x {h}" for w, h in sorted(set(map(tuple, sizes))))
    left_out = (f"objects without a positive anchor: {unmatched}" if unmatched
                else "every object has a positive anchor")
    return (f"{what} ({shapes_shown} px anchors, {len(shown)} of them): {counts['positive']} positive, "
            f"{counts['ignored']} ignored, {counts['negative']} negative. "
            f"All {sum(total_counts.values())} anchors: "
            f"{total_counts['positive']} positive, {total_counts['ignored']} ignored, "
            f"{total_counts['negative']} negative; {left_out}.")


def anchor_labels_view(
    image: int = 7,
    level: int = 2,
    ratio: float = 1.0,
    high: float = 0.7,
    low: float = 0.3,
    low_quality: bool = True,
) -> AnchorView:
    """Match every anchor of Shapes image ``image`` and show those of ``level`` (0 = P2) and ``ratio``.

    ``high`` / ``low``: the Matcher's thresholds (the RPN's are 0.7 / 0.3); ``low_quality``: its
    ``allow_low_quality_matches`` (the RPN's ``True``).
    """
    if not 0 <= level < len(LEVEL_NAMES):
        raise ValueError(f"level must be in 0..{len(LEVEL_NAMES) - 1} (P2..P6), got {level}")
    picture, boxes = shapes_scene(image)
    anchors, levels, ratios = shapes_anchors(picture.shape[-1])
    if not torch.isclose(ratios, torch.tensor(float(ratio))).any():
        raise ValueError(f"ratio must be one of {sorted(set(ratios.tolist()))}, got {ratio}")
    shown = (levels == level) & torch.isclose(ratios, torch.tensor(float(ratio)))
    iou = box_iou(boxes, anchors)  # [K, A]
    best_iou = iou.max(dim=0).values
    what = f"{LEVEL_NAMES[level]}, ratio {ratio:g}"
    figure = Figure(figsize=(10, 4.6), layout="constrained")
    ax_image, ax_hist = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1]})
    draw_scene(ax_image, picture, boxes)
    if low > high:
        caption = _no_matching(ax_image, ax_hist, picture, what, high, low)
        return AnchorView(figure, caption, valid=False, shown=shown, best_iou=best_iou)
    matches = Matcher(high, low, allow_low_quality_matches=low_quality)(iou)  # [A], all levels at once
    counts, total_counts = _count(matches[shown]), _count(matches)
    matched_objects = set(matches[matches >= 0].tolist())
    unmatched = [k for k in range(len(boxes)) if k not in matched_objects]
    _verdict_panel(ax_image, picture, anchors[shown], matches[shown], f"image {image}: anchors of {what}")
    _iou_histogram(ax_hist, best_iou[shown], matches[shown], high, low)
    caption = _caption(what, anchors[shown], counts, total_counts, unmatched)
    return AnchorView(figure, caption, valid=True, matches=matches, shown=shown, best_iou=best_iou,
                      counts=counts, total_counts=total_counts, unmatched_objects=unmatched)


def anchor_explorer(draw: bool = True, **initial) -> Explorer:
    """The widget: image, level, ratio, the two thresholds and the low-quality rule.

    ``initial`` overrides the controls' starting values (keyword arguments of ``anchor_labels_view``).
    """
    start = dict(image=7, level=2, ratio=1.0, high=0.7, low=0.3, low_quality=True) | initial
    config = shapes()
    level_options = [(f"{name} ({', '.join(map(str, sizes))} px)", level)
                     for level, (name, sizes) in enumerate(zip(LEVEL_NAMES, config.anchor_sizes))]
    shape_names = {0.5: " (wide)", 2.0: " (tall)"}
    ratio_options = [(f"{r:g}" + shape_names.get(r, ""), float(r)) for r in config.aspect_ratios[0]]
    threshold = dict(min=0.05, max=0.95, step=0.05, continuous_update=False, readout_format=".2f")
    controls = {
        "image": widgets.IntSlider(value=start["image"], min=0, max=NUM_IMAGES - 1,
                                   description="Shapes image", continuous_update=False),
        "level": widgets.Dropdown(options=level_options, value=start["level"], description="level"),
        "ratio": widgets.Dropdown(options=ratio_options, value=float(start["ratio"]),
                                  description="ratio h/w"),
        "high": widgets.FloatSlider(value=start["high"], description="high (positive at or above)",
                                    **threshold),
        "low": widgets.FloatSlider(value=start["low"], description="low (negative below)", **threshold),
        "low_quality": widgets.Checkbox(value=start["low_quality"],
                                        description="every object gets its best anchor"),
    }
    return Explorer(controls, anchor_labels_view, draw=draw)
