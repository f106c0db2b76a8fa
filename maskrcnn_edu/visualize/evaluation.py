"""Evaluation drawings: ground truth against prediction, an IoU grid, a precision-recall curve.

Drawing only: which prediction matched which object is ``evaluation.matching``'s (``match_boxes``,
the rule every chapter, explorer and benchmark uses); the IoUs of the grid are its ``box_ious``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..evaluation.matching import box_ious, match_boxes
from .primitives import (_legend, _new_figure, _rectangles, _style_handle, class_name, draw_boxes, show_image,
                         to_numpy)

__all__ = ["draw_matches", "draw_iou_grid", "draw_pr_curve"]


MATCH_COLOURS = {"matched": "tab:green", "missed": "tab:red", "false positive": "tab:orange"}


def draw_matches(image, gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores, iou_threshold: float = 0.5,
                 class_names: Sequence[str] | None = None) -> Figure:
    """Ground truth vs prediction on one image (matched by ``evaluation.match_boxes``: best score
    first, same class, IoU ``>= iou_threshold``): matched pairs green (ground truth dashed,
    prediction solid), missed ground truth red (dashed), false positives orange (solid, with their
    scores). Counts in the title."""
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
    draw_boxes(ax, pred_boxes[matched_pred], pred_labels[matched_pred], pred_scores[matched_pred],
               class_names, colors=green)
    _rectangles(ax, gt_boxes[result.missed], [red] * len(result.missed), "--", 2.0, gid="missed")
    for (x0, y0, _, _), label in zip(gt_boxes[result.missed], gt_labels[result.missed]):
        ax.text(x0, y0, f"missed {class_name(int(label), class_names)}", color="white", fontsize=8, va="top",
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
    ious = box_ious(gt_boxes, pred_boxes)  # [G, P]
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
        return [f"{prefix} {k}" + ("" if labels is None else f": {class_name(int(labels[k]), class_names)}")
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
