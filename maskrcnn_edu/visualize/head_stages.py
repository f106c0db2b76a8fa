"""The heads' stages of detection, from a ``Trace``: the box head's class-specific refinement,
per-class NMS, the mask head's logits (inference) and its targets (training). As in
:mod:`.stages`, a stage the chapters and the detection stepper both show has one axes-level
drawer, ``draw_X_on(ax, trace, i, ...)``, which the figure ``draw_X(trace, i, ...)`` calls."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .primitives import (
    _caption, _new_figure, _rectangles, _style_handle, class_colors, class_name, draw_boxes, draw_captions,
    draw_masks, show_image, to_numpy,
)
from .stages import (
    NMSOutcome, _centre_lines, _check_image_index, _image_figure, _need_training, _outcome_handles,
    _place_legend, draw_nms_outcome, need_inference, nms_outcome,
)

__all__ = ["best_object_class", "draw_roi_refinement_on", "draw_roi_refinement", "class_nms_outcome",
           "draw_class_nms_on", "draw_class_nms", "draw_mask_logits", "draw_mask_targets"]


# Box head -------------------------------------------------------------------------------------------


def best_object_class(trace, i: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Each RoI's most likely object class, the background left out -> ``(scores [R], labels [R])``,
    labels in ``1..K-1``."""
    best_score, best_class = trace.heads.class_scores[i][:, 1:].max(dim=1)
    return best_score, best_class + 1


def draw_roi_refinement_on(ax: Axes, trace, i: int = 0, top_k: int = 20,
                           class_names: Sequence[str] | None = None, captions: int = 5,
                           min_score: float = 0.0, legend: str | None = None) -> Axes:
    """The box head's class-specific refinement: of the RoIs whose best object-class score is at
    least ``min_score``, the ``top_k`` by that score (dotted) and the box the head moves each to for
    that class (solid, class colour), a line joining their centres; the best ``captions`` refined
    boxes get a ``"class score"`` caption. In a training trace the RoIs are the sampled ones."""
    _check_image_index(trace, i)
    score, label = best_object_class(trace, i)
    passing = torch.where(score >= min_score)[0]
    order = passing[score[passing].argsort(descending=True, stable=True)][:top_k]
    rois = to_numpy(trace.heads.proposals[i][order])
    refined = to_numpy(trace.heads.refined_boxes[i][order, label[order]])
    labels, scores = to_numpy(label[order]), to_numpy(score[order])
    palette = class_colors(trace.heads.class_scores[i].shape[1])
    colours = [tuple(palette[k]) for k in labels]
    draw_boxes(ax, rois, style="dotted", colors=colours)
    draw_boxes(ax, refined, style="solid", colors=colours)
    _centre_lines(ax, rois, refined, colours)
    shown = min(len(order), captions)  # more captions than a few would hide the boxes
    draw_captions(ax, refined[:shown], [_caption(k, s, class_names) for k, s in zip(labels, scores[:shown])],
                  colours[:shown])
    handles = [_style_handle("RoI", "dotted"), _style_handle("refined for its class", "solid")]
    handles += [_style_handle(class_name(k, class_names), "solid", tuple(palette[k]))
                for k in np.unique(labels)]
    _place_legend(ax, handles, legend)
    return ax


def draw_roi_refinement(trace, i: int = 0, top_k: int = 20, class_names: Sequence[str] | None = None,
                        captions: int = 5) -> Figure:
    """:func:`draw_roi_refinement_on` on image ``i``, the legend outside, titled."""
    fig, ax = _image_figure(trace, i, width=7.5)
    draw_roi_refinement_on(ax, trace, i, top_k, class_names, captions, legend="outside")
    count = len(trace.heads.class_scores[i])
    ax.set_title(f"Box head: the top {min(top_k, count)} of {count} RoIs (dotted)\n"
                 "refined for their most likely class (solid)", fontsize=10)
    return fig


# Per-class NMS -------------------------------------------------------------------------------------


def class_nms_outcome(trace, i: int = 0) -> NMSOutcome:
    """The outcome of each per-class NMS candidate of image ``i`` (``trace.heads.pre_nms[i]``): from
    ``heads.nms_survivors`` (NMS within each class) and ``heads.detection_candidates`` (the
    survivors the top ``detections_per_img`` let through: the detections)."""
    need_inference(trace, "class_nms_outcome")
    heads = trace.heads
    return nms_outcome(len(heads.pre_nms[i]["scores"]), heads.nms_survivors[i], heads.detection_candidates[i])


def draw_class_nms_on(ax: Axes, trace, i: int = 0, label: int | None = None,
                      class_names: Sequence[str] | None = None, min_score: float = 0.0,
                      limit: int | None = None, legend: str | None = "inside") -> Axes:
    """Per-class NMS of the box head (inference trace): the candidates of class ``label`` (``None``:
    of every class) scoring at least ``min_score``, by what became of them (``draw_nms_outcome``):
    detections solid in their class's colour with their scores (and class, when every class is
    drawn), cut by the top ``detections_per_img``, or suppressed by NMS."""
    _check_image_index(trace, i)
    need_inference(trace, "draw_class_nms")
    candidates = trace.heads.pre_nms[i]
    chosen = candidates["scores"] >= min_score
    if label is not None:
        chosen &= candidates["labels"] == label
    labels, scores, boxes = (to_numpy(candidates[key]) for key in ("labels", "scores", "boxes"))
    palette = class_colors(trace.heads.class_scores[i].shape[1])
    colours = [tuple(palette[k]) for k in labels]
    kept = draw_nms_outcome(ax, boxes, scores, class_nms_outcome(trace, i).where(chosen), colours, limit,
                            legend=legend)
    texts = [_caption(None if label is not None else labels[k], scores[k], class_names) for k in kept]
    return draw_captions(ax, boxes[kept], texts, [colours[k] for k in kept])


def draw_class_nms(trace, i: int = 0, class_names: Sequence[str] | None = None) -> Figure:
    """Per-class NMS of the box head (inference trace): one panel per class that has candidates
    above the score threshold (:func:`draw_class_nms_on`), its counts in the title."""
    _check_image_index(trace, i)
    need_inference(trace, "draw_class_nms")
    labels = trace.heads.pre_nms[i]["labels"]
    classes = labels.unique().tolist()
    cols = min(max(len(classes), 1), 3)
    rows = -(-max(len(classes), 1) // cols)
    fig = _new_figure(3.3 * cols, 3.6 * rows + 0.3)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    if len(classes) == 0:
        show_image(axes[0], trace.image(i), title="No candidates above the score threshold")
    outcome = class_nms_outcome(trace, i)
    for ax, label in zip(axes, classes):
        show_image(ax, trace.image(i))
        draw_class_nms_on(ax, trace, i, label, class_names, legend=None)
        counts = outcome.where(labels == label).counts()
        name, total = class_name(label, class_names), sum(counts.values())
        ax.set_title(f"{name}: {total} candidates → {counts['kept']} kept\n"
                     f"{counts['suppressed']} suppressed, {counts['cut']} cut by the top-k", fontsize=10)
    for ax in axes[len(classes) or 1:]:
        ax.set_visible(False)
    fig.legend(handles=_outcome_handles(), fontsize=8, loc="outside lower center", ncols=3)
    fig.suptitle("Per-class NMS of the box head's candidates", fontsize=11)
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
        name = class_name(label, class_names)
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
        name = class_name(label, class_names)
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
