"""Chapter 03's explorer: how the NMS threshold and the post-NMS top-k trade proposals for recall.

The RPN's last step keeps, per image, the boxes that survive non-maximum suppression within each
FPN level and then the ``post_nms_top_n`` best of them. Both knobs decide how many proposals the
box head must classify and how many objects it can still find. A trace already holds the
candidates that step started from (``trace.rpn.pre_nms_*``), so redoing it with other settings
needs no network run: that is all the explorer does.

* ``objects_found`` and ``rpn_recall``: the recall of a set of boxes, the fraction of ground-truth
  objects with at least one box at IoU >= a threshold (pooled over images).
* ``Candidates``: one image's candidates before NMS, taken from a trace.
* ``NMSSweep``: the candidates of a handful of images, with their NMS results cached per threshold.
* ``proposals_view``: the explorer's view; ``rpn_explorer``: the widget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Sequence

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from ..boxes import batched_nms, box_iou, check_boxes
from ..visualize import draw_box, draw_boxes, show_image
from .shell import Explorer, View

__all__ = [
    "RECALL_THRESHOLDS",
    "SWEEP_THRESHOLDS",
    "TOP_N_OPTIONS",
    "objects_found",
    "rpn_recall",
    "Candidates",
    "NMSSweep",
    "ProposalsView",
    "proposals_view",
    "rpn_explorer",
]

RECALL_THRESHOLDS = (0.5, 0.7)  # the IoUs at which an object counts as found
SWEEP_THRESHOLDS = tuple(round(0.3 + 0.05 * k, 2) for k in range(15))  # NMS thresholds 0.3 .. 1.0
TOP_N_OPTIONS = (10, 25, 50, 100, 250, 500, 1000)  # post-NMS top-k choices in the widget
# Colours of an object's best proposal: found at the strict IoU, at the loose one, or not at all.
FOUND_COLOURS = ("tab:green", "tab:orange", "tab:red")


def objects_found(boxes: Tensor, objects: Tensor, iou_threshold: float) -> Tensor:
    """Which ``objects [K, 4]`` have a box of ``boxes [B, 4]`` at IoU >= the threshold -> ``[K]`` bool."""
    check_boxes(boxes, "boxes")
    check_boxes(objects, "objects")
    if len(boxes) == 0 or len(objects) == 0:
        return torch.zeros(len(objects), dtype=torch.bool)
    return box_iou(objects, boxes.to(objects.dtype)).max(dim=1).values >= iou_threshold


def rpn_recall(boxes, objects, iou_thresholds: Sequence[float] = RECALL_THRESHOLDS) -> dict[float, float]:
    """Recall of ``boxes`` at each IoU threshold: found objects / all objects, over all images.

    ``boxes``: one ``[B, 4]`` tensor, or a list with one per image; ``objects``: the ground-truth
    boxes ``[K, 4]``, alike. An object is found when some box of its own image overlaps it with
    IoU >= the threshold. Pooled: an image with more objects weighs more (not a mean of per-image
    recalls). Returns ``{threshold: recall}``; ``nan`` where there are no objects at all.
    """
    if isinstance(boxes, Tensor):
        boxes = [boxes]
    if isinstance(objects, Tensor):
        objects = [objects]
    if len(boxes) != len(objects):
        raise ValueError(f"boxes and objects must hold one entry per image, "
                         f"got {len(boxes)} and {len(objects)}")
    total = sum(len(o) for o in objects)
    recall = {}
    for threshold in iou_thresholds:
        found = sum(int(objects_found(b, o, threshold).sum()) for b, o in zip(boxes, objects))
        recall[float(threshold)] = found / total if total else math.nan
    return recall


@dataclass
class Candidates:
    """One image's RPN candidates before NMS (the per-level top-k, clipped), from a trace.

    ``boxes [T, 4]``, ``scores [T]`` (objectness probabilities), ``levels [T]`` (0 = P2),
    ``objects [K, 4]``, ``iou [K, T]`` (every object against every candidate) and ``image [3, h, w]``,
    all in the resized image's pixels, the frame the RPN works in.
    """

    boxes: Tensor
    scores: Tensor
    levels: Tensor
    objects: Tensor
    iou: Tensor
    image: Tensor

    @classmethod
    def from_trace(cls, trace, objects: Tensor, i: int = 0) -> "Candidates":
        """Image ``i`` of an inference ``trace``; ``objects [K, 4]`` in the *original* image's pixels."""
        check_boxes(objects, "objects")
        rpn = trace.rpn
        if not 0 <= i < len(rpn.pre_nms_boxes):
            raise ValueError(f"image index i={i} is out of range: the trace holds {len(rpn.pre_nms_boxes)} "
                             "image(s)")
        sy, sx = trace.scales[i]
        objects = objects.to(torch.float32) * torch.tensor([sx, sy, sx, sy])
        boxes = rpn.pre_nms_boxes[i]
        empty = len(objects) == 0 or len(boxes) == 0
        iou = torch.zeros(len(objects), len(boxes)) if empty else box_iou(objects, boxes)  # [K, T]
        return cls(boxes, rpn.pre_nms_scores[i], rpn.pre_nms_levels[i], objects, iou, trace.image(i))


class NMSSweep:
    """The candidates of a handful of images, and the RPN's NMS redone on them at any threshold.

    ``traces``: inference traces (``model.trace(image)``), their images taken in order;
    ``objects``: one ``[K, 4]`` tensor of ground-truth boxes per image, in original pixels. The
    NMS result of each (image, threshold) is computed once and cached, so changing the top-k, or
    coming back to a threshold, costs nothing.
    """

    def __init__(self, traces: Sequence, objects: Sequence[Tensor]):
        images = [(trace, i) for trace in traces for i in range(len(trace.rpn.pre_nms_boxes))]
        if len(images) != len(objects):
            raise ValueError(f"objects must hold one [K, 4] tensor per image: the traces hold {len(images)} "
                             f"image(s), objects has {len(objects)}")
        self.candidates = [Candidates.from_trace(trace, o, i) for (trace, i), o in zip(images, objects)]
        self._survivors: dict[tuple[int, float], Tensor] = {}

    def __len__(self) -> int:
        return len(self.candidates)

    def survivors(self, image: int, nms_threshold: float) -> Tensor:
        """Indices ``[S]`` of image ``image``'s candidates that survive NMS within each level, best first
        (at the model's threshold: ``trace.rpn.nms_survivors``)."""
        key = (image, round(float(nms_threshold), 6))
        if key not in self._survivors:
            c = self.candidates[image]
            self._survivors[key] = batched_nms(c.boxes, c.scores, c.levels, float(nms_threshold))
        return self._survivors[key]

    def proposals(self, image: int, nms_threshold: float, post_nms_top_n: int) -> Tensor:
        """Indices ``[P]`` of the proposals, as the RPN selects them: NMS, then the ``post_nms_top_n``
        best."""
        if post_nms_top_n < 1:
            raise ValueError(f"post_nms_top_n must be >= 1, got {post_nms_top_n}")
        return self.survivors(image, nms_threshold)[:post_nms_top_n]

    def found(self, image: int, keep: Tensor, iou_threshold: float) -> Tensor:
        """``[K]`` bool: which objects of ``image`` some of the candidates ``keep`` overlap at IoU >= the
        threshold."""
        iou = self.candidates[image].iou[:, keep]
        if iou.shape[1] == 0:
            return torch.zeros(iou.shape[0], dtype=torch.bool)
        return iou.max(dim=1).values >= iou_threshold

    def recall(self, nms_threshold: float, post_nms_top_n: int,
               iou_thresholds: Sequence[float] = RECALL_THRESHOLDS) -> dict[float, float]:
        """Recall of the proposals of every image at each IoU threshold (pooled, as ``rpn_recall``)."""
        total = sum(len(c.objects) for c in self.candidates)
        recall = {}
        for threshold in iou_thresholds:
            found = sum(int(self.found(k, self.proposals(k, nms_threshold, post_nms_top_n), threshold).sum())
                        for k in range(len(self)))
            recall[float(threshold)] = found / total if total else math.nan
        return recall

    def counts(self, nms_threshold: float, post_nms_top_n: int) -> list[int]:
        """Number of proposals of each image."""
        return [len(self.proposals(k, nms_threshold, post_nms_top_n)) for k in range(len(self))]


@dataclass
class ProposalsView(View):
    """The explorer's picture, caption and numbers.

    ``num_candidates`` / ``num_survivors`` / ``num_proposals``: per image, the candidates before NMS,
    those NMS keeps, and the proposals after the top-k. ``recall``: ``{IoU: recall}`` over all the
    images; ``image_found``: ``{IoU: [K] bool}`` for the image shown, whose objects' best IoU with a
    proposal is ``best_iou [K]``. ``sweep``: the curves drawn, ``{"thresholds", "survivors" and
    "proposals" (means per image, before and after the top-k), IoU: recall}`` at every threshold
    of ``SWEEP_THRESHOLDS``, for the chosen top-k.
    """

    nms_threshold: float = 0.7
    post_nms_top_n: int = 250
    image: int = 0
    num_candidates: list = field(default_factory=list)
    num_survivors: list = field(default_factory=list)
    num_proposals: list = field(default_factory=list)
    recall: dict = field(default_factory=dict)
    image_found: dict = field(default_factory=dict)
    best_iou: Tensor | None = None
    sweep: dict = field(default_factory=dict)

    @property
    def mean_proposals(self) -> float:
        """Proposals per image, averaged over the images."""
        return float(np.mean(self.num_proposals)) if self.num_proposals else 0.0


def _draw_image_panel(ax, sweep: NMSSweep, image: int, keep: Tensor, best_iou: Tensor,
                      image_found: dict) -> None:
    """Image ``image`` with its proposals (faint) and, per object, the ground truth (dashed) and
    the proposal that fits it best (solid, coloured by how well)."""
    c = sweep.candidates[image]
    show_image(ax, c.image)
    draw_boxes(ax, c.boxes[keep], style="faint", colors="black")
    strict, loose = max(RECALL_THRESHOLDS), min(RECALL_THRESHOLDS)
    for k, obj in enumerate(c.objects):
        draw_box(ax, obj, color="white", linestyle="--", linewidth=1.5)
        if len(keep) == 0:
            continue
        best = keep[c.iou[k, keep].argmax()]
        quality = 0 if image_found[strict][k] else 1 if image_found[loose][k] else 2
        colour = FOUND_COLOURS[quality]
        draw_box(ax, c.boxes[best], color=colour, linewidth=2.0)
        x0, y0 = float(c.boxes[best][0]), float(c.boxes[best][1])
        ax.text(x0 + 1, y0 + 1, f"{float(best_iou[k]):.2f}", color="white", fontsize=8, va="top", ha="left",
                bbox=dict(facecolor=colour, edgecolor="none", alpha=0.8, pad=1))
    found_text = ", ".join(f"{int(image_found[t].sum())}/{len(c.objects)} at IoU {t:g}"
                           for t in RECALL_THRESHOLDS)
    ax.set_title(f"image {image}: {len(keep)} proposals (faint)\nobjects found: {found_text}", fontsize=10)
    handles = [Line2D([], [], color="0.5", linestyle="--", label="object (white, dashed)"),
               Line2D([], [], color=FOUND_COLOURS[0], label=f"best proposal, IoU >= {strict:g}"),
               Line2D([], [], color=FOUND_COLOURS[1], label=f"best, {loose:g} <= IoU < {strict:g}"),
               Line2D([], [], color=FOUND_COLOURS[2], label=f"best, IoU < {loose:g}")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=8,
              frameon=False)


def _draw_sweep_panel(ax, view: ProposalsView, num_images: int) -> None:
    """Recall at each IoU and proposals per image against the NMS threshold, for the chosen top-k."""
    thresholds = view.sweep["thresholds"]
    styles = {RECALL_THRESHOLDS[0]: ("tab:blue", "o"), RECALL_THRESHOLDS[-1]: ("tab:purple", "s")}
    for t in RECALL_THRESHOLDS:
        colour, marker = styles.get(t, ("tab:gray", "."))
        ax.plot(thresholds, view.sweep[t], color=colour, marker=marker, markersize=4,
                label=f"recall at IoU {t:g}")
    ax.axvline(view.nms_threshold, color="black", linestyle=":", linewidth=1.2, label="chosen threshold")
    ax.set(xlabel="NMS IoU threshold (suppress above)", ylabel="recall", ylim=(0, 1.02),
           title=f"{num_images} images, post-NMS top {view.post_nms_top_n}")
    ax.grid(alpha=0.3)
    counts = ax.twinx()
    counts.plot(thresholds, view.sweep["survivors"], color="0.6", linestyle=":",
                label="survived NMS (before top-k)")
    counts.plot(thresholds, view.sweep["proposals"], color="0.3", linestyle="--",
                label="proposals (after top-k)")
    counts.set_ylabel("boxes per image (mean over the images)")
    counts.set_ylim(0, max(max(view.sweep["survivors"]), 1) * 1.1)
    handles = ax.get_legend_handles_labels()[0] + counts.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)


def _sweep_curves(sweep: NMSSweep, post_nms_top_n: int) -> dict:
    """``ProposalsView.sweep``: at every NMS threshold of ``SWEEP_THRESHOLDS``, the boxes per image
    NMS keeps and the proposals after the top-k (means over the images), and the recall at each IoU."""
    images = range(len(sweep))
    curves = {"thresholds": list(SWEEP_THRESHOLDS),
              "proposals": [float(np.mean(sweep.counts(t, post_nms_top_n))) for t in SWEEP_THRESHOLDS],
              "survivors": [float(np.mean([len(sweep.survivors(k, t)) for k in images]))
                            for t in SWEEP_THRESHOLDS]}
    for t in RECALL_THRESHOLDS:
        curves[t] = [sweep.recall(s, post_nms_top_n, (t,))[t] for s in SWEEP_THRESHOLDS]
    return curves


def proposals_view(sweep: NMSSweep, nms_threshold: float = 0.7, post_nms_top_n: int = 250,
                   image: int = 0) -> ProposalsView:
    """Redo the RPN's NMS and top-k on ``sweep``'s images and report proposals and recall.

    Left: image ``image`` with its proposals; for each object its best proposal with the IoU
    (green: found at IoU 0.7, orange: at 0.5 only, red: not found). Right: recall at IoU 0.5 and
    0.7 and the mean number of proposals per image, against the NMS threshold, for this top-k.
    """
    if not 0 <= image < len(sweep):
        raise ValueError(f"image must be in 0..{len(sweep) - 1}, got {image}")
    if not 0.0 <= nms_threshold <= 1.0:
        raise ValueError(f"nms_threshold must be in [0, 1], got {nms_threshold}")
    nms_threshold, post_nms_top_n = float(nms_threshold), int(post_nms_top_n)
    keep = sweep.proposals(image, nms_threshold, post_nms_top_n)
    c = sweep.candidates[image]
    image_found = {t: sweep.found(image, keep, t) for t in RECALL_THRESHOLDS}
    best_iou = c.iou[:, keep].max(dim=1).values if len(keep) else torch.zeros(len(c.objects))
    view = ProposalsView(
        Figure(figsize=(10, 5.0), layout="constrained"),
        nms_threshold=nms_threshold, post_nms_top_n=post_nms_top_n, image=image,
        num_candidates=[len(c.boxes) for c in sweep.candidates],
        num_survivors=[len(sweep.survivors(k, nms_threshold)) for k in range(len(sweep))],
        num_proposals=sweep.counts(nms_threshold, post_nms_top_n),
        recall=sweep.recall(nms_threshold, post_nms_top_n),
        image_found=image_found, best_iou=best_iou, sweep=_sweep_curves(sweep, post_nms_top_n),
    )
    ax_image, ax_sweep = view.figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.15]})
    _draw_image_panel(ax_image, sweep, image, keep, best_iou, image_found)
    _draw_sweep_panel(ax_sweep, view, len(sweep))
    recall_text = " and ".join(f"{view.recall[t]:.3f} at IoU {t:g}" for t in RECALL_THRESHOLDS)
    view.caption = (
        f"NMS threshold {nms_threshold:.2f}, post-NMS top {post_nms_top_n}: image {image} keeps "
        f"{view.num_survivors[image]} of its {view.num_candidates[image]} candidates after NMS and "
        f"{view.num_proposals[image]} after the top-k. Over the {len(sweep)} images: "
        f"{view.mean_proposals:.1f} proposals per image, recall {recall_text}."
    )
    return view


def rpn_explorer(sweep: NMSSweep, draw: bool = True, **initial) -> Explorer:
    """The widget: NMS threshold, post-NMS top-k and the image shown, over ``sweep``'s images.

    ``sweep``: an ``NMSSweep`` of traces already computed (the widget never runs the network).
    ``initial`` overrides the starting values (keyword arguments of ``proposals_view``); the
    defaults are the Shapes model's test settings, 0.7 and 250.
    """
    start = dict(nms_threshold=0.7, post_nms_top_n=250, image=0) | initial
    controls = {
        "nms_threshold": widgets.FloatSlider(value=start["nms_threshold"], min=SWEEP_THRESHOLDS[0],
                                             max=SWEEP_THRESHOLDS[-1], step=0.05, readout_format=".2f",
                                             continuous_update=False, description="NMS IoU threshold"),
        "post_nms_top_n": widgets.SelectionSlider(options=sorted({*TOP_N_OPTIONS, start["post_nms_top_n"]}),
                                                  value=start["post_nms_top_n"], continuous_update=False,
                                                  description="post-NMS top-k"),
        "image": widgets.IntSlider(value=start["image"], min=0, max=len(sweep) - 1, continuous_update=False,
                                   description="image shown"),
    }
    return Explorer(controls, partial(proposals_view, sweep), draw=draw)
