"""One drawing per stage of detection, from a ``Trace`` (``model.trace(image)`` or
``model.trace(image, target)``): the RPN's stages here (anchors of a cell, anchor labels,
refinements, objectness, NMS, proposals), the heads' in :mod:`.head_stages`.

A stage that both a chapter figure and the detection stepper (``explorers.stepper``) show has one
axes-level drawer, ``draw_X_on(ax, trace, i, ...)``: it draws the stage on an ``ax`` that already
shows image ``i`` and returns ``ax``. The figure ``draw_X(trace, i, ...)`` adds the titles, colour
bars and extra panels around it; the stepper adds its zoom, the followed detection and captions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import matplotlib
import matplotlib.collections
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..rpn import flatten_level_predictions
from .primitives import (
    _legend, _new_figure, _rectangles, _style_handle, draw_boxes, level_colour, level_name, score_colours,
    score_scale, show_image, to_numpy, widen_view,
)

__all__ = [
    "need_inference", "anchor_objectness", "top_anchors", "cell_anchor_indices", "draw_cell_anchors_on",
    "draw_cell_anchors", "draw_anchor_labels", "draw_refinements_on", "draw_refinements",
    "draw_top_objectness_on", "draw_top_objectness", "draw_objectness_heatmaps", "NMSOutcome", "nms_outcome",
    "rpn_nms_outcome", "NMS_STYLES", "draw_nms_outcome", "draw_nms_on", "draw_nms", "draw_proposals_on",
    "draw_proposals",
]


# Helpers for drawings from a Trace ------------------------------------------------------------------


def _check_image_index(trace, i: int) -> None:
    count = len(trace.batch.image_sizes)
    if not 0 <= i < count:
        raise ValueError(f"image index i={i} is out of range: the trace holds {count} image(s)")


def _need_training(trace, what: str) -> None:
    if trace.rpn.anchor_labels is None:
        raise ValueError(f"{what} needs a training trace: model.trace(image, target)")


def need_inference(trace, what: str) -> None:
    """Raise a ``ValueError`` naming ``what`` unless ``trace`` is an inference trace (it has the
    heads' per-class NMS and the detections)."""
    if trace.heads.pre_nms is None or trace.heads.detections is None or trace.detections is None:
        raise ValueError(f"{what} needs an inference trace: model.trace(image) without targets")


def _strides(trace, maps: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    """Each map's stride ``(sy, sx)`` in pixels: padded image size // grid size, as the anchors use."""
    padded_h, padded_w = trace.batch.tensors.shape[-2:]
    return [(padded_h // m.shape[-2], padded_w // m.shape[-1]) for m in maps]


def _image_figure(trace, i: int, width: float = 6.5, height: float = 6.0) -> tuple[Figure, Axes]:
    """A figure with one axes showing image ``i`` as the network saw it (resized pixels)."""
    _check_image_index(trace, i)
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


def _place_legend(ax: Axes, handles: list, legend: str | None, **kwargs) -> None:
    """The drawers' ``legend`` argument: ``"inside"`` the axes, ``"outside"`` the panels, or ``None``."""
    if legend is not None:
        _legend(ax, handles, outside=legend == "outside", **kwargs)


# Anchors and objectness -------------------------------------------------------------------------------


def anchor_objectness(trace, i: int = 0) -> torch.Tensor:
    """Objectness probability of every anchor of image ``i`` -> ``[A_total]``, in the order of
    ``torch.cat(trace.anchors)`` (level by level; cell-major, then anchor within a cell)."""
    _check_image_index(trace, i)
    # As the RPN flattens them: per level [N, A, H, W] -> [N, H*W*A, 1], then all levels.
    flat = torch.cat([flatten_level_predictions(level, 1) for level in trace.rpn.objectness], dim=1)
    return flat[i, :, 0].sigmoid()


def top_anchors(trace, i: int = 0, top_k: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``top_k`` anchors of image ``i`` by objectness -> (indices ``[k]`` into
    ``torch.cat(trace.anchors)``, their probabilities ``[k]``), best first."""
    scores = anchor_objectness(trace, i)
    top = scores.topk(min(top_k, len(scores)))
    return top.indices, top.values


def _point(trace, point_yx, i: int) -> tuple[float, float]:
    """``point_yx`` as floats ``(y, x)``, or the centre of image ``i``."""
    height, width = trace.batch.image_sizes[i]
    return (height / 2, width / 2) if point_yx is None else (float(point_yx[0]), float(point_yx[1]))


def cell_anchor_indices(trace, point_yx=None, i: int = 0) -> list[torch.Tensor]:
    """For each FPN level, the indices (into that level's anchors) of the cell nearest a point.

    ``point_yx``: ``(y, x)`` in the resized image's pixels, default the image centre. At a level of
    stride ``s`` the cell ``(round(y / s), round(x / s))`` is the one whose anchors are centred
    nearest the point (a cell's anchors are centred on its top-left pixel, ``(row * s, col * s)``).
    """
    _check_image_index(trace, i)
    y, x = _point(trace, point_yx, i)
    indices = []
    for objectness, (stride_y, stride_x) in zip(trace.rpn.objectness, _strides(trace, trace.rpn.objectness)):
        per_cell, grid_h, grid_w = objectness.shape[1:]
        row = min(max(round(y / stride_y), 0), grid_h - 1)
        col = min(max(round(x / stride_x), 0), grid_w - 1)
        first = (row * grid_w + col) * per_cell  # cell-major order: A anchors per cell
        indices.append(torch.arange(first, first + per_cell))
    return indices


def draw_cell_anchors_on(ax: Axes, trace, cell_yx=None, i: int = 0, margin: float = 0.0) -> Axes:
    """The anchors of one cell at every FPN level (:func:`cell_anchor_indices`), dotted, in each
    level's colour, a cross on the point ``cell_yx``; the view widened to every anchor drawn (the
    coarse levels' anchors reach past the image), ``margin`` pixels more."""
    y, x = _point(trace, cell_yx, i)
    drawn = []
    for level, indices in enumerate(cell_anchor_indices(trace, (y, x), i)):
        drawn.append(trace.rpn.anchors[level][indices])  # [A, 4]
        draw_boxes(ax, drawn[-1], style="dotted", colors=level_colour(level), linewidth=2.0)
    ax.plot([x], [y], marker="+", color="white", markersize=12, markeredgewidth=2)
    return widen_view(ax, torch.cat(drawn), margin)


def _cell_anchor_handles(trace, indices: list[torch.Tensor]) -> list:
    """Legend entries for :func:`draw_cell_anchors`: each level's stride, sizes, ratios and shapes."""
    handles = []
    for level, (level_indices, (_, stride)) in enumerate(zip(indices, _strides(trace, trace.rpn.objectness))):
        anchors = to_numpy(trace.rpn.anchors[level][level_indices])  # [A, 4]
        w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        # A level's sizes are the sides of its square anchors (sqrt(area) of the rest would read 8.5
        # for a rounded 12 x 6 anchor of size 8); corners are rounded to pixels, so ratios are approximate.
        square = np.isclose(w, h)
        sides = w[square] if square.any() else np.sqrt(w * h)
        sizes = "/".join(sorted({f"{v:.0f}" for v in sides}, key=float))
        ratios = "/".join(sorted({f"{r:.1g}" for r in h / w}, key=float))
        shapes = ", ".join(f"{a:g}×{b:g}" for a, b in zip(w, h))
        text = f"{level_name(level)} (stride {stride}): size {sizes} px, h/w ≈ {ratios} (w×h {shapes})"
        handles.append(_style_handle(text, "dotted", level_colour(level)))
    return handles


def draw_cell_anchors(trace, cell_yx=None, i: int = 0) -> Figure:
    """The anchors of one cell at every FPN level, drawn dotted on the image, one colour per level.

    ``cell_yx``: the point ``(y, x)`` in the resized image's pixels whose cell is shown at every
    level (default: the image centre); see :func:`cell_anchor_indices`. The legend gives each
    level's stride, anchor size (sqrt of the area) and ratios ``h / w``; a cross marks the point.
    """
    fig, ax = _image_figure(trace, i, width=6.5, height=7.5)
    draw_cell_anchors_on(ax, trace, cell_yx, i, margin=4.0)
    y, x = _point(trace, cell_yx, i)
    indices = cell_anchor_indices(trace, (y, x), i)
    ax.set_axis_on()
    ax.tick_params(labelsize=8)
    ax.set_title(f"Anchors of the cell nearest (x={x:g}, y={y:g}) at every FPN level: "
                 f"{sum(len(k) for k in indices)} anchors", fontsize=10)
    fig.legend(handles=_cell_anchor_handles(trace, indices), fontsize=8, loc="outside lower center")
    return fig


def _anchor_label_groups(trace, i: int, sampled_only: bool, max_negatives: int, seed: int):
    """Positive, negative (those drawn) and ignored anchor indices of image ``i``, and the title."""
    from ..matching import BACKGROUND_LABEL, IGNORE

    labels = trace.rpn.anchor_labels[i]
    counts = {name: int((labels == value).sum()) for name, value in
              (("positive", 1), ("negative", BACKGROUND_LABEL), ("ignored", IGNORE))}
    if sampled_only:
        positive, negative = trace.rpn.sampled_positive[i], trace.rpn.sampled_negative[i]
        title = (f"Anchors sampled for the RPN loss: {len(positive)} positive, {len(negative)} negative\n"
                 f"(of {counts['positive']} positive, {counts['negative']} negative, "
                 f"{counts['ignored']} ignored)")
        return positive, negative, torch.zeros(0, dtype=torch.long), title
    negative = torch.where(labels == BACKGROUND_LABEL)[0]
    generator = torch.Generator().manual_seed(seed)
    drawn_negative = negative[torch.randperm(len(negative), generator=generator)[:max_negatives]]
    title = (f"Anchor labels: {counts['positive']} positive, {counts['negative']} negative "
             f"({len(drawn_negative)} drawn), {counts['ignored']} ignored")
    return torch.where(labels == 1)[0], drawn_negative, torch.where(labels == IGNORE)[0], title


def draw_anchor_labels(trace, i: int = 0, sampled_only: bool = False, max_negatives: int = 100,
                       seed: int = 0) -> Figure:
    """Positive (solid green), negative (faint red) and ignored (dotted orange) anchors of a training
    trace, with the ground-truth boxes (dashed blue). The title gives the counts.

    All anchors: every positive and ignored anchor, and ``max_negatives`` negatives drawn at random
    (``seed``; there are thousands). ``sampled_only``: just the anchors the RPN loss sampled.
    """
    _check_image_index(trace, i)
    _need_training(trace, "draw_anchor_labels")
    anchors = to_numpy(torch.cat(trace.rpn.anchors))
    positive, negative, ignored, title = _anchor_label_groups(trace, i, sampled_only, max_negatives, seed)
    fig, ax = _image_figure(trace, i, width=7.5, height=6.6)
    draw_boxes(ax, anchors[to_numpy(negative)], style="faint", colors="tab:red")
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


def draw_refinements_on(ax: Axes, trace, i: int = 0, top_k: int = 20, legend: str | None = None) -> Axes:
    """The ``top_k`` anchors by objectness (dotted) and the boxes the RPN's deltas move them to
    (solid, unclipped), each pair in one colour, a line joining their centres."""
    indices, _ = top_anchors(trace, i, top_k)
    anchors = to_numpy(torch.cat(trace.rpn.anchors)[indices])
    refined = to_numpy(trace.rpn.decoded_boxes[i, indices])
    cycle = matplotlib.colormaps["tab20"].colors
    colours = [cycle[k % len(cycle)] for k in range(len(indices))]
    draw_boxes(ax, anchors, style="dotted", colors=colours)
    draw_boxes(ax, refined, style="solid", colors=colours)
    _centre_lines(ax, anchors, refined, colours)
    _place_legend(ax, [_style_handle("anchor", "dotted"), _style_handle("refined box", "solid")], legend)
    return ax


def draw_refinements(trace, i: int = 0, top_k: int = 20) -> Figure:
    """:func:`draw_refinements_on` on image ``i``, titled."""
    fig, ax = _image_figure(trace, i)
    draw_refinements_on(ax, trace, i, top_k, legend="inside")
    ax.set_title(f"RPN refinement: the top {len(top_anchors(trace, i, top_k)[0])} anchors by objectness "
                 "(dotted)\nand the boxes their predicted deltas make (solid)", fontsize=10)
    return fig


def draw_top_objectness_on(ax: Axes, trace, i: int = 0, top_k: int = 50) -> Axes:
    """The ``top_k`` anchors by objectness probability (dotted), coloured by it (:func:`score_colours`),
    the best drawn last, on top."""
    indices, scores = top_anchors(trace, i, top_k)
    boxes = torch.cat(trace.rpn.anchors)[indices]
    draw_boxes(ax, boxes.flip(0), style="dotted", colors=score_colours(scores.flip(0)), linewidth=2.0)
    return ax


def draw_top_objectness(trace, i: int = 0, top_k: int = 50) -> Figure:
    """:func:`draw_top_objectness_on` on image ``i``, with a colour bar."""
    fig, ax = _image_figure(trace, i, width=7.0)
    draw_top_objectness_on(ax, trace, i, top_k)
    _, scores = top_anchors(trace, i, top_k)
    fig.colorbar(score_scale(), ax=ax, shrink=0.8, label="objectness (sigmoid)")
    ax.set_title(f"Top {len(scores)} anchors by objectness ({scores.min():.2f} to {scores.max():.2f})",
                 fontsize=10)
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
    panels, cols = len(levels) + 1, 3
    fig = _new_figure(9.0, 3.0 * -(-panels // cols))
    axes = fig.subplots(-(-panels // cols), cols, squeeze=False).ravel()
    show_image(axes[0], trace.image(i), title="image")
    scale = score_scale("magma")
    for level, (objectness, (sy, sx)) in enumerate(zip(levels, _strides(trace, levels))):
        heat = to_numpy(objectness[i].sigmoid().amax(dim=0))  # [H_l, W_l]
        grid_h, grid_w = heat.shape
        ax = axes[level + 1]
        ax.imshow(heat, cmap=scale.cmap, norm=scale.norm, interpolation="nearest",
                  extent=(0, grid_w * sx, grid_h * sy, 0))
        ax.set_xlim(0, width)  # the padding's cells lie outside the image
        ax.set_ylim(height, 0)
        ax.tick_params(labelsize=8)
        ax.set_title(f"{level_name(level)}: {grid_h}×{grid_w} cells, stride {sx}, max {heat.max():.2f}",
                     fontsize=9)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.colorbar(scale, ax=axes[:panels].tolist(), shrink=0.8, label="max objectness over the cell's anchors")
    fig.suptitle("RPN objectness per FPN level (highest over each cell's anchors)", fontsize=11)
    return fig


# NMS and proposals ----------------------------------------------------------------------------------


@dataclass
class NMSOutcome:
    """What NMS and the top-k after it made of ``T`` candidates: three ``[T]`` bool masks, exactly
    one true per candidate. ``kept``: went on (the RPN's proposals, the heads' detections);
    ``cut``: survived NMS but ranked past the top-k; ``suppressed``: NMS removed it (a better box
    of its level, or of its class, overlapped it too much)."""

    kept: torch.Tensor
    cut: torch.Tensor
    suppressed: torch.Tensor

    def where(self, chosen: torch.Tensor) -> NMSOutcome:
        """The outcome of the candidates in ``chosen [T]`` (bool) only; the others in none of the three."""
        return NMSOutcome(self.kept & chosen, self.cut & chosen, self.suppressed & chosen)

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name).sum()) for name in ("kept", "cut", "suppressed")}


def nms_outcome(count: int, survivors: torch.Tensor, kept: torch.Tensor) -> NMSOutcome:
    """``count`` candidates, ``survivors [S]`` (the indices NMS kept) and ``kept [K]`` (those of them
    the top-k let through) -> the :class:`NMSOutcome` of each candidate."""
    survived = torch.zeros(count, dtype=torch.bool, device=survivors.device)
    survived[survivors] = True
    went_on = torch.zeros_like(survived)
    went_on[kept] = True
    return NMSOutcome(kept=went_on, cut=survived & ~went_on, suppressed=~survived)


def rpn_nms_outcome(trace, i: int = 0) -> NMSOutcome:
    """The outcome of each of the RPN's pre-NMS boxes of image ``i`` (``trace.rpn.pre_nms_boxes[i]``):
    from ``rpn.nms_survivors`` (NMS within each level) and ``rpn.nms_keep`` (the post-NMS top-k)."""
    rpn = trace.rpn
    return nms_outcome(len(rpn.pre_nms_boxes[i]), rpn.nms_survivors[i], rpn.nms_keep[i])


# Outcome: (box style, colour (None: the caller's), legend text); drawn in this order, the kept on top.
NMS_STYLES = {
    "suppressed": ("faint", "tab:red", "suppressed by NMS"),
    # Half see-through: the top-k cuts the weakest boxes, hundreds of them all over the image.
    "cut": ("dotted", (1.0, 0.5, 0.05, 0.5), "survived NMS, cut by the top-k"),
    "kept": ("solid", None, "kept"),
}


def _outcome_handles(counts: dict | None = None) -> list:
    """Legend entries for :data:`NMS_STYLES`, kept first; with ``counts``, each text says how many."""
    return [_style_handle(text + ("" if counts is None else f": {counts[name]}"), style, colour or "black")
            for name, (style, colour, text) in reversed(NMS_STYLES.items())]


def draw_nms_outcome(ax: Axes, boxes, scores, outcome: NMSOutcome, colours: Sequence,
                     limit: int | None = None, linewidth: float = 1.5,
                     legend: str | None = "inside") -> np.ndarray:
    """Draw NMS's candidates ``boxes [T, 4]`` by what became of them (:data:`NMS_STYLES`): kept solid
    in their ``colours[k]``, cut by the top-k dotted orange, suppressed faint red. At most ``limit``
    of each kind, the best by ``scores [T]``, each kind's best on top; the legend counts them all.
    Returns the indices of the kept boxes drawn, best first (for captions)."""
    boxes, scores = to_numpy(boxes).reshape(-1, 4), to_numpy(scores).reshape(-1)
    drawn = {}
    for name, (style, colour, _) in NMS_STYLES.items():
        members = np.where(to_numpy(getattr(outcome, name)))[0]
        drawn[name] = members[np.argsort(-scores[members], kind="stable")][:limit]
        order = drawn[name][::-1]  # the best last, on top
        draw_boxes(ax, boxes[order], style=style, colors=colour or [colours[k] for k in order],
                   linewidth=linewidth)
    _place_legend(ax, _outcome_handles(outcome.counts()), legend)
    return drawn["kept"]


def draw_nms_on(ax: Axes, trace, i: int = 0, limit: int | None = None, linewidth: float = 1.5,
                legend: str | None = "inside") -> Axes:
    """The RPN's NMS: each pre-NMS box of image ``i`` by what became of it (:func:`draw_nms_outcome`):
    a proposal (solid, coloured by objectness, weak ones fainter), cut by the post-NMS top-k, or
    suppressed by NMS. ``limit``: at most that many of each kind, the best by objectness."""
    _check_image_index(trace, i)
    scores = trace.rpn.pre_nms_scores[i]
    draw_nms_outcome(ax, trace.rpn.pre_nms_boxes[i], scores, rpn_nms_outcome(trace, i),
                     score_colours(scores, fade=True), limit, linewidth, legend)
    return ax


def draw_nms(trace, i: int = 0) -> Figure:
    """The RPN's non-maximum suppression, two panels.

    Left, before NMS: every candidate box (the per-level top-k, clipped), solid, coloured by
    objectness. Right, after NMS and the post-NMS top-k (:func:`draw_nms_on`): the proposals solid,
    the boxes NMS suppressed faint red, those it let through but the top-k cut dotted orange.
    """
    _check_image_index(trace, i)
    boxes, scores = to_numpy(trace.rpn.pre_nms_boxes[i]), to_numpy(trace.rpn.pre_nms_scores[i])
    fig = _new_figure(10.0, 5.2)
    before, after = fig.subplots(1, 2)
    for ax in (before, after):
        show_image(ax, trace.image(i))
    order = np.argsort(scores, kind="stable")  # best drawn last, on top
    draw_boxes(before, boxes[order], style="solid", colors=score_colours(scores[order], fade=True),
               linewidth=0.8)
    before.set_title(f"Before NMS: {len(boxes)} boxes", fontsize=10)
    draw_nms_on(after, trace, i, linewidth=0.8)
    counts = rpn_nms_outcome(trace, i).counts()
    after.set_title(f"After NMS and the top-k: {counts['kept']} proposals (solid)", fontsize=10)
    fig.colorbar(score_scale(), ax=[before, after], shrink=0.7, label="objectness")
    return fig


def draw_proposals_on(ax: Axes, trace, i: int = 0, top_k: int = 50, colour_by: str = "level",
                      legend: str | None = "inside") -> Axes:
    """The ``top_k`` proposals by objectness (after NMS), solid, the best on top, coloured by the FPN
    level of the anchor each came from (:func:`level_colour`; the legend counts them per level) or,
    ``colour_by="objectness"``, by their objectness (:func:`score_colours`)."""
    _check_image_index(trace, i)
    if colour_by not in ("level", "objectness"):
        raise ValueError(f'colour_by must be "level" or "objectness", got {colour_by!r}')
    order = trace.rpn.proposal_scores[i].argsort(descending=True, stable=True)[:top_k].flip(0)
    levels = to_numpy(trace.rpn.proposal_levels[i][order])
    by_level = colour_by == "level"
    if by_level:
        colours = [level_colour(level) for level in levels]
    else:
        colours = score_colours(trace.rpn.proposal_scores[i][order])
    draw_boxes(ax, trace.rpn.proposals[i][order], style="solid", colors=colours)
    handles = [_style_handle(f"{level_name(k)}: {int((levels == k).sum())}", "solid", level_colour(k))
               for k in np.unique(levels)]
    _place_legend(ax, handles, legend if by_level else None, title="anchor's level")
    return ax


def draw_proposals(trace, i: int = 0, top_k: int = 50) -> Figure:
    """:func:`draw_proposals_on` on image ``i``, the legend outside, titled with the scores' range."""
    fig, ax = _image_figure(trace, i, width=7.0)
    draw_proposals_on(ax, trace, i, top_k, legend="outside")
    scores = trace.rpn.proposal_scores[i].sort(descending=True).values[:top_k]
    low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 0.0)
    ax.set_title(f"Top {len(scores)} of {len(trace.rpn.proposal_scores[i])} proposals "
                 f"(objectness {low:.2f} to {high:.2f})", fontsize=10)
    return fig
