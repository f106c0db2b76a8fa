"""One drawing per stage of detection, from a ``Trace`` (``model.trace(image)`` or
``model.trace(image, target)``): anchors of a cell, anchor labels, refinements, objectness, NMS,
proposals, RoI refinement, per-class NMS, mask logits and targets."""
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
from .primitives import BOX_STYLES, _caption, _class_name, _new_figure, _rectangles, class_colors, draw_boxes, draw_masks, show_image, to_numpy

__all__ = ["anchor_objectness", "cell_anchor_indices", "draw_cell_anchors", "draw_anchor_labels", "draw_refinements", "draw_top_objectness", "draw_objectness_heatmaps", "draw_nms", "draw_proposals", "draw_roi_refinement", "draw_class_nms", "draw_mask_logits", "draw_mask_targets"]


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
