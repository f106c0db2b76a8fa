"""Chapter 00's detection stepper: walk through detection on one image, stage by stage, from the
input to the final detections, and follow one detection back to its anchor (view function
:func:`stepper_view`, images :func:`default_images`)."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from .shell import COLUMN_WIDTH_PX, DPI, ShowsStaticPicture, described, figure_png, picture_widget, row

from .. import roi_ops
from ..boxes import box_iou
from ..masks import paste_masks
from ..visualize import (
    anchor_objectness,
    cell_anchor_indices,
    class_colors,
    draw_box,
    draw_boxes,
    draw_feature_map,
    draw_masks,
    draw_roi_pool_bins,
    draw_sampling_points,
    roi_align_box,
    show_image,
    to_numpy,
)

__all__ = ["STAGES", "DetectionLineage", "detection_lineage", "StepperView", "stepper_view", "default_images", "DetectionStepper"]

STAGES = (
    "input",
    "anchors",
    "objectness top-k",
    "refined boxes",
    "NMS",
    "proposals",
    "RoIs",
    "class scores and refinement",
    "per-class NMS",
    "masks",
    "final detections",
)

TOP_K_DRAWN = 30  # boxes drawn in the crowded RPN stages (the captions count all of them)
NMS_DRAWN = 100  # candidates drawn in the NMS stage
HIGHLIGHT = "magenta"  # the followed detection's boxes
MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class DetectionLineage:
    """Where detection ``detection`` of image 0 of an inference trace came from, stage by stage.

    Boxes ``[4]`` are in the resized image's pixels (the trace's frame) except ``final_box``
    (original pixels). ``anchor_index`` counts in ``torch.cat(trace.rpn.anchors)``, ``anchor_level``
    is 0 = P2 ... 4 = P6; ``candidate`` indexes the RPN's pre-NMS boxes; ``roi`` the proposals (which
    are the RoIs at inference). ``rpn_box``: the anchor moved by its deltas (unclipped);
    ``proposal``: the same box clipped, as it survived NMS. ``refined``: the RoI refined for the
    detection's class (= the detection's box). ``mask_logits [M, M]`` and ``mask [M, M]``
    (probabilities) for its own class; ``final_mask [H, W]``: pasted at the original size.
    """

    detection: int
    label: int
    score: float
    anchor_index: int
    anchor_level: int
    anchor: Tensor
    objectness: float
    rpn_box: Tensor
    candidate: int
    roi: int
    proposal: Tensor
    roi_level: int
    class_scores: Tensor
    refined: Tensor
    mask_logits: Tensor
    mask: Tensor
    final_box: Tensor
    final_mask: Tensor


def _need_inference(trace) -> None:
    if trace.heads.detections is None or trace.detections is None:
        raise ValueError("trace has no detections: trace the model without targets (model.trace(image))")


def detection_lineage(trace, detection: int) -> DetectionLineage:
    """Follow detection ``detection`` (an index into ``trace.detections[0]``) of a one-image
    inference trace back through the heads and the RPN to its anchor:
    ``heads.detection_rois`` -> the proposal -> ``rpn.proposal_anchor_index`` -> the anchor.

    Raises ``ValueError`` for a training trace or a detection index out of range.
    """
    _need_inference(trace)
    found = trace.heads.detections[0]
    count = len(found["scores"])
    if isinstance(detection, bool) or not isinstance(detection, int) or not 0 <= detection < count:
        raise ValueError(f"detection must be an int in 0..{count - 1} (the trace has {count} detections), "
                         f"got {detection!r}")
    rpn, heads = trace.rpn, trace.heads
    roi = int(heads.detection_rois[0][detection])
    candidate = int(rpn.nms_keep[0][roi])
    anchor_index = int(rpn.pre_nms_anchor_index[0][candidate])
    label = int(found["labels"][detection])
    return DetectionLineage(
        detection=detection,
        label=label,
        score=float(found["scores"][detection]),
        anchor_index=anchor_index,
        anchor_level=int(rpn.pre_nms_levels[0][candidate]),
        anchor=torch.cat(rpn.anchors)[anchor_index],
        objectness=float(rpn.pre_nms_scores[0][candidate]),
        rpn_box=rpn.decoded_boxes[0, anchor_index],
        candidate=candidate,
        roi=roi,
        proposal=heads.proposals[0][roi],
        roi_level=int(heads.roi_levels[0][roi]),
        class_scores=heads.class_scores[0][roi],
        refined=heads.refined_boxes[0][roi, label],
        mask_logits=heads.detection_mask_logits[0][detection],
        mask=found["masks"][detection, 0],
        final_box=trace.detections[0]["boxes"][detection],
        final_mask=trace.detections[0]["masks"][detection, 0],
    )


@dataclass
class StepperView:
    """What the stepper shows: ``figure`` (the stage drawn on the image, left, and a side panel),
    ``caption`` (one or two sentences with the stage's numbers), ``counts`` (those numbers by name),
    ``highlighted`` (role -> box ``(x0, y0, x1, y1)`` drawn in magenta for the followed detection;
    each is a ``Rectangle`` patch whose ``gid`` is ``"selected <role>"``) and ``shown_detections``
    (indices of the detections that pass the score threshold)."""

    figure: Figure | None
    caption: str
    stage: str
    counts: dict = field(default_factory=dict)
    highlighted: dict = field(default_factory=dict)
    shown_detections: list = field(default_factory=list)


@dataclass
class _Scene:
    """What a stage's drawing function needs: the trace, the controls' values, the two axes."""

    trace: object
    score_threshold: float
    lineage: DetectionLineage | None
    class_names: Sequence[str]
    config: object
    main: Axes
    side: Axes
    counts: dict = field(default_factory=dict)
    highlighted: dict = field(default_factory=dict)

    def name(self, label: int) -> str:
        label = int(label)
        return self.class_names[label] if 0 <= label < len(self.class_names) else f"class {label}"

    def setting(self, attribute: str, default=None):
        """A value of the model's config, or ``default`` when the stepper was given no config."""
        return getattr(self.config, attribute, default)

    def mark(self, box: Tensor, role: str, linestyle: str = "-", ax: Axes | None = None) -> None:
        """Draw the followed detection's ``box`` in magenta, as a patch with gid ``"selected <role>"``."""
        ax = ax or self.main
        draw_box(ax, to_numpy(box), color=HIGHLIGHT, linestyle=linestyle, linewidth=3.0)
        ax.patches[-1].set_gid(f"selected {role}")
        if ax is self.main:
            self.highlighted[role] = tuple(float(v) for v in to_numpy(box))


def _level_name(level: int) -> str:
    return f"P{level + 2}"  # anchor / pre-NMS levels count from 0 = P2


def _side_note(ax: Axes, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, color="0.35", transform=ax.transAxes)


def _zoom(ax: Axes, image: Tensor, boxes: Sequence[tuple[Tensor, str, str]], title: str) -> None:
    """The image zoomed onto ``boxes``: ``(box [4], colour, linestyle)`` each."""
    show_image(ax, image)
    corners = torch.stack([box for box, _, _ in boxes])
    for box, colour, linestyle in boxes:
        draw_box(ax, to_numpy(box), color=colour, linestyle=linestyle, linewidth=2.5)
    x0, y0 = corners[:, :2].min(dim=0).values.tolist()
    x1, y1 = corners[:, 2:].max(dim=0).values.tolist()
    margin = 0.3 * max(x1 - x0, y1 - y0) + 2
    ax.set_xlim(x0 - margin, x1 + margin)
    ax.set_ylim(y1 + margin, y0 - margin)  # y points down
    ax.set_title(title, fontsize=10)


def _score_colours(scores: np.ndarray, cmap: str = "viridis") -> list:
    return [tuple(c) for c in matplotlib.colormaps[cmap](np.clip(scores, 0.0, 1.0))]


def _top(scores: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` highest ``scores``, best first (stable for ties)."""
    return scores.argsort(descending=True, stable=True)[:k]


def _stage_input(scene: _Scene) -> str:
    trace = scene.trace
    (height, width), (rh, rw) = trace.original_sizes[0], trace.batch.image_sizes[0]
    padded_h, padded_w = trace.batch.tensors.shape[-2:]
    scale = trace.scales[0][0]
    scene.counts.update(original=(height, width), resized=(rh, rw), padded=(padded_h, padded_w))
    scene.main.set_title(f"the network's input, resized to {rh} x {rw}", fontsize=10)
    if scene.lineage is not None:
        scene.mark(scene.lineage.refined, "refined", linestyle="--")  # where the followed detection will be
    normalised = trace.batch.tensors[0].mean(dim=0)  # [Hp, Wp], mean over RGB
    limit = float(normalised.abs().max()) or 1.0
    shown = scene.side.imshow(to_numpy(normalised), cmap="RdBu_r", vmin=-limit, vmax=limit,
                              extent=(0, padded_w, padded_h, 0))
    draw_box(scene.side, (0, 0, rw, rh), color="black", linestyle="--", linewidth=1.0)  # the image, unpadded
    scene.side.figure.colorbar(shown, ax=scene.side, fraction=0.046, pad=0.04)
    scene.side.set_title(f"normalised, padded to {padded_h} x {padded_w} (mean over RGB)", fontsize=10)
    return (f"Input: the {height} x {width} image is resized to {rh} x {rw} (x{scale:.2f}), normalised with "
            f"ImageNet's mean and std, and zero-padded to {padded_h} x {padded_w}, a multiple of 32.")


def _stage_anchors(scene: _Scene) -> str:
    trace = scene.trace
    anchors = trace.rpn.anchors
    per_level = [len(level) for level in anchors]
    per_cell = trace.rpn.objectness[0].shape[1]
    scene.counts.update(anchors=sum(per_level), per_level=per_level, per_cell=per_cell)
    colours = matplotlib.colormaps["tab10"].colors
    shown = []
    for level, indices in enumerate(cell_anchor_indices(trace)):
        boxes = anchors[level][indices]
        draw_boxes(scene.main, boxes, style="dotted", colors=colours[level], linewidth=2.0)
        shown.append(boxes)
    if scene.lineage is not None:
        scene.mark(scene.lineage.anchor, "anchor", linestyle=":")
        shown.append(scene.lineage.anchor[None])
    # Widen the view to every drawn anchor: the coarse levels' anchors reach past the image.
    every = torch.cat(shown)
    height, width = trace.batch.image_sizes[0]
    x0, y0 = min(0.0, float(every[:, 0].min())), min(0.0, float(every[:, 1].min()))
    x1, y1 = max(float(width), float(every[:, 2].max())), max(float(height), float(every[:, 3].max()))
    scene.main.set_xlim(x0, x1)
    scene.main.set_ylim(y1, y0)
    scene.main.set_title("one cell's anchors at every level (dotted), centred on the image", fontsize=10)
    names = [_level_name(level) for level in range(len(anchors))]
    scene.side.bar(names, per_level, color=[colours[level] for level in range(len(anchors))])
    scene.side.set_yscale("log")
    scene.side.set_ylabel("anchors")
    scene.side.set_title(f"anchors per level ({per_cell} per cell)", fontsize=10)
    counts = ", ".join(f"{name}: {count}" for name, count in zip(names, per_level))
    return (f"Anchors: {per_cell} boxes of different shapes per feature-map cell at each of the {len(anchors)} "
            f"FPN levels, {sum(per_level)} anchors in all ({counts}).")


def _anchor_level(trace, anchor_index: int) -> int:
    """The FPN level (0 = P2) of anchor ``anchor_index`` of ``torch.cat(trace.rpn.anchors)``."""
    ends = np.cumsum([len(level) for level in trace.rpn.anchors])
    return int(np.searchsorted(ends, anchor_index, side="right"))


def _stage_objectness(scene: _Scene) -> str:
    trace = scene.trace
    objectness = anchor_objectness(trace)  # [A_total]
    candidates = len(trace.rpn.pre_nms_boxes[0])
    top = _top(objectness, TOP_K_DRAWN)
    scene.counts.update(anchors=len(objectness), candidates=candidates, drawn=len(top))
    scores = to_numpy(objectness[top])
    draw_boxes(scene.main, torch.cat(trace.rpn.anchors)[top].flip(0), style="dotted",
               colors=_score_colours(scores[::-1]), linewidth=2.0)  # best drawn last, on top
    level = _anchor_level(trace, int(top[0])) if scene.lineage is None else scene.lineage.anchor_level
    if scene.lineage is not None:
        scene.mark(scene.lineage.anchor, "anchor", linestyle=":")
    scene.main.set_title(f"the {len(top)} anchors with the highest objectness (dotted)", fontsize=10)
    heat = trace.rpn.objectness[level][0].sigmoid().amax(dim=0)  # [H_l, W_l]: best anchor of each cell
    draw_feature_map(scene.side, heat, cmap="viridis", vmin=0.0, vmax=1.0, grid=False, colorbar=True,
                     title=f"objectness at {_level_name(level)}, best anchor of each cell")
    per_level = scene.setting("rpn_pre_nms_top_n_test")
    keep = f"the best {per_level} of each level" if per_level else "the best of each level"
    return (f"Objectness: the RPN scores all {len(objectness)} anchors; {keep} ({candidates} in all) go on. "
            f"Drawn: the {len(top)} best ({scores.min():.2f} to {scores.max():.2f}).")


def _stage_refined(scene: _Scene) -> str:
    trace = scene.trace
    objectness = anchor_objectness(trace)
    top = _top(objectness, TOP_K_DRAWN)
    anchors = torch.cat(trace.rpn.anchors)[top]
    refined = trace.rpn.decoded_boxes[0, top]
    colours = [matplotlib.colormaps["tab20"].colors[k % 20] for k in range(len(top))]
    draw_boxes(scene.main, anchors, style="dotted", colors=colours)
    draw_boxes(scene.main, refined, style="solid", colors=colours)
    mean_iou = float(box_iou(anchors, refined).diagonal().mean()) if len(top) else 0.0
    scene.counts.update(drawn=len(top), mean_iou=mean_iou)
    scene.main.set_title(f"the {len(top)} best anchors (dotted) and their refined boxes (solid)", fontsize=10)
    if scene.lineage is not None:
        scene.mark(scene.lineage.anchor, "anchor", linestyle=":")
        scene.mark(scene.lineage.rpn_box, "rpn box")
        anchor, box = scene.lineage.anchor, scene.lineage.rpn_box
        title = "the followed detection's anchor and refined box"
    else:
        anchor, box = anchors[0], refined[0]
        title = "the best anchor and its refined box"
    iou = float(box_iou(anchor[None], box[None])[0, 0])
    _zoom(scene.side, trace.image(0), [(anchor, HIGHLIGHT, ":"), (box, HIGHLIGHT, "-")], f"{title}: IoU {iou:.2f}")
    return (f"Refinement: each anchor is moved by its four predicted deltas (dx, dy, dw, dh). Drawn: the "
            f"{len(top)} best anchors (dotted) and their boxes (solid); mean IoU of anchor and box {mean_iou:.2f}.")


def _stage_nms(scene: _Scene) -> str:
    trace = scene.trace
    boxes, scores, levels = trace.rpn.pre_nms_boxes[0], trace.rpn.pre_nms_scores[0], trace.rpn.pre_nms_levels[0]
    kept = torch.zeros(len(boxes), dtype=torch.bool)
    kept[trace.rpn.nms_keep[0]] = True
    scene.counts.update(candidates=len(boxes), kept=int(kept.sum()))
    drawn = _top(scores, NMS_DRAWN)
    suppressed, survived = drawn[~kept[drawn]], drawn[kept[drawn]].flip(0)
    draw_boxes(scene.main, boxes[suppressed], style="faint", colors="red")
    draw_boxes(scene.main, boxes[survived], style="solid", colors=_score_colours(to_numpy(scores[survived])))
    if scene.lineage is not None:
        scene.mark(scene.lineage.proposal, "proposal")
    scene.main.set_title(f"the {len(drawn)} best boxes: kept solid, suppressed faint red", fontsize=10)
    names = sorted(set(int(level) for level in levels))
    kept_counts = [int((kept & (levels == level)).sum()) for level in names]
    lost_counts = [int((~kept & (levels == level)).sum()) for level in names]
    labels = [_level_name(level) for level in names]
    scene.side.bar(labels, kept_counts, color="tab:green", label="kept")
    scene.side.bar(labels, lost_counts, bottom=kept_counts, color="tab:red", alpha=0.4, label="suppressed")
    scene.side.legend(fontsize=8)
    scene.side.set_title("boxes per level, before and after NMS", fontsize=10)
    iou = scene.setting("rpn_nms_thresh")
    post = scene.setting("rpn_post_nms_top_n_test")
    rule = f"IoU > {iou}" if iou is not None else "a high IoU"
    cut = f" and only the best {post} are kept" if post is not None else ""
    return (f"NMS: a box that overlaps a better one of its level by {rule} is suppressed{cut}: "
            f"NMS kept {int(kept.sum())} of {len(boxes)} boxes.")


def _stage_proposals(scene: _Scene) -> str:
    trace = scene.trace
    proposals, scores = trace.rpn.proposals[0], trace.rpn.proposal_scores[0]
    top = _top(scores, TOP_K_DRAWN)
    scene.counts.update(proposals=len(proposals), drawn=len(top))
    draw_boxes(scene.main, proposals[top].flip(0), style="solid", colors=_score_colours(to_numpy(scores[top].flip(0))))
    if scene.lineage is not None:
        scene.mark(scene.lineage.proposal, "proposal")
    scene.main.set_title(f"the {len(top)} best proposals, coloured by objectness", fontsize=10)
    scene.side.hist(to_numpy(scores), bins=20, range=(0.0, 1.0), color="tab:blue")
    scene.side.set_yscale("log")
    scene.side.set_xlabel("objectness")
    scene.side.set_title(f"objectness of the {len(proposals)} proposals", fontsize=10)
    if scene.lineage is not None:
        scene.side.axvline(scene.lineage.objectness, color=HIGHLIGHT, linewidth=2)
    low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 0.0)
    return (f"Proposals: the {len(proposals)} boxes that survived NMS (objectness {low:.2f} to {high:.2f}) are the "
            f"regions the box head will classify; the best {len(top)} are drawn.")


def _stage_rois(scene: _Scene) -> str:
    trace = scene.trace
    rois, levels = trace.heads.proposals[0], trace.heads.roi_levels[0]
    order = _top(trace.rpn.proposal_scores[0], 2 * TOP_K_DRAWN)
    colours = matplotlib.colormaps["tab10"].colors
    draw_boxes(scene.main, rois[order], style="dotted", colors=[colours[int(level) - 2] for level in levels[order]])
    if scene.lineage is not None:
        scene.mark(scene.lineage.proposal, "proposal", linestyle=":")
    per_level = {f"P{level}": int((levels == level).sum()) for level in range(2, 6)}
    scene.counts.update(rois=len(rois), per_level=per_level)
    scene.main.set_title(f"{len(order)} RoIs (dotted), coloured by the level they are read from", fontsize=10)
    scene.side.bar(list(per_level), list(per_level.values()), color=colours[:4])
    scene.side.set_ylabel("RoIs")
    scene.side.set_title("RoIs per FPN level (bigger boxes read coarser levels)", fontsize=10)
    size = tuple(trace.heads.box_features_shape[1:])
    counts = ", ".join(f"{name}: {count}" for name, count in per_level.items() if count)
    return (f"RoIs: each of the {len(rois)} RoIs is read from the FPN level that suits its size ({counts}); "
            f"RoIAlign cuts a {size[1]} x {size[2]} x {size[0]} grid from it for the box head.")


def _stage_class_scores(scene: _Scene) -> str:
    trace = scene.trace
    scores = trace.heads.class_scores[0]  # [R, K]
    best_score, best_class = scores[:, 1:].max(dim=1)  # the most likely object class, background left out
    best_class = best_class + 1
    passing = (best_score >= scene.score_threshold).nonzero()[:, 0]
    drawn = passing[_top(best_score[passing], 20)].flip(0)
    rois = trace.heads.proposals[0][drawn]
    refined = trace.heads.refined_boxes[0][drawn, best_class[drawn]]
    palette = class_colors(scores.shape[1])
    colours = [tuple(palette[label]) for label in to_numpy(best_class[drawn])]
    draw_boxes(scene.main, rois, style="dotted", colors=colours, linewidth=1.0)
    draw_boxes(scene.main, refined, labels=best_class[drawn], scores=best_score[drawn], class_names=scene.class_names,
               style="solid", colors=colours)
    scene.counts.update(rois=len(scores), passing=len(passing), classes=scores.shape[1])
    scene.main.set_title(f"RoIs (dotted) refined for their best class (solid), score >= {scene.score_threshold:.2f}",
                         fontsize=10)
    if scene.lineage is not None:
        scene.mark(scene.lineage.proposal, "proposal", linestyle=":")
        scene.mark(scene.lineage.refined, "refined")
        names = [scene.name(k) for k in range(scores.shape[1])]
        bars = scene.side.bar(names, to_numpy(scene.lineage.class_scores), color=[tuple(c) for c in palette])
        bars[scene.lineage.label].set_edgecolor(HIGHLIGHT)
        bars[scene.lineage.label].set_linewidth(3)
        scene.side.set_ylim(0, 1)
        scene.side.set_title(f"class scores of the followed detection's RoI {scene.lineage.roi}", fontsize=10)
    else:
        scene.side.hist(to_numpy(best_score), bins=20, range=(0.0, 1.0), color="tab:blue")
        scene.side.axvline(scene.score_threshold, color="black", linestyle="--", label="min score")
        scene.side.set_yscale("log")
        scene.side.set_xlabel("best object-class score")
        scene.side.legend(fontsize=8)
        scene.side.set_title("each RoI's best object-class score", fontsize=10)
    return (f"Box head: each of the {len(scores)} RoIs gets a softmax over {scores.shape[1]} classes and one "
            f"refinement per class; {len(passing)} RoIs score >= {scene.score_threshold:.2f} for an object class "
            f"(drawn: the best {len(drawn)}, RoI dotted, its class's refinement solid).")


def _kept_candidates(trace) -> Tensor:
    """``[C]`` bool: which per-class NMS candidates (``heads.pre_nms``) became detections.

    A candidate is one (RoI, class) pair, and so is a detection: match them on that pair.
    """
    candidates, found = trace.heads.pre_nms[0], trace.heads.detections[0]
    num_classes = trace.heads.class_scores[0].shape[1]
    candidate_keys = candidates["rois"] * num_classes + candidates["labels"]
    detection_keys = trace.heads.detection_rois[0] * num_classes + found["labels"]
    return torch.isin(candidate_keys, detection_keys)


def _stage_class_nms(scene: _Scene) -> str:
    trace = scene.trace
    candidates = trace.heads.pre_nms[0]
    shown = candidates["scores"] >= scene.score_threshold
    kept = _kept_candidates(trace) & shown
    lost = ~_kept_candidates(trace) & shown
    scene.counts.update(candidates=int(shown.sum()), kept=int(kept.sum()))
    draw_boxes(scene.main, candidates["boxes"][lost], style="faint", colors="red")
    draw_boxes(scene.main, candidates["boxes"][kept], labels=candidates["labels"][kept],
               scores=candidates["scores"][kept], class_names=scene.class_names, style="solid")
    if scene.lineage is not None:
        scene.mark(scene.lineage.refined, "refined")
    scene.main.set_title("per-class NMS: kept solid, suppressed faint red", fontsize=10)
    labels = candidates["labels"]
    classes = sorted(set(int(label) for label in labels[shown]))
    names = [scene.name(label) for label in classes]
    scene.side.bar(names, [int((kept & (labels == c)).sum()) for c in classes], color="tab:green", label="kept")
    scene.side.bar(names, [int((lost & (labels == c)).sum()) for c in classes],
                   bottom=[int((kept & (labels == c)).sum()) for c in classes], color="tab:red", alpha=0.4,
                   label="suppressed")
    if classes:
        scene.side.legend(fontsize=8)
    scene.side.set_title(f"candidates per class, score >= {scene.score_threshold:.2f}", fontsize=10)
    iou, cap = scene.setting("box_nms_thresh"), scene.setting("detections_per_img")
    rule = f"IoU > {iou}" if iou is not None else "a high IoU"
    cap_text = f" (the model returns at most {cap})" if cap is not None else ""
    return (f"Per-class NMS: {int(shown.sum())} class-specific boxes score >= {scene.score_threshold:.2f}; within each "
            f"class a box overlapping a better one by {rule} is dropped: NMS kept {int(kept.sum())} of "
            f"{int(shown.sum())}{cap_text}.")


def _shown(trace, score_threshold: float) -> Tensor:
    """Indices of the detections scoring at least ``score_threshold``."""
    return (trace.heads.detections[0]["scores"] >= score_threshold).nonzero()[:, 0]


def _stage_masks(scene: _Scene) -> str:
    trace = scene.trace
    found = trace.heads.detections[0]
    shown = _shown(trace, scene.score_threshold)
    boxes = found["boxes"][shown]
    palette = class_colors(trace.heads.class_scores[0].shape[1])
    colours = [tuple(palette[label]) for label in to_numpy(found["labels"][shown])]
    aligned = getattr(scene.config, "aligned", False)
    pasted = paste_masks(found["masks"][shown], boxes, trace.batch.image_sizes[0], aligned=aligned)  # [D, 1, h, w]
    draw_masks(scene.main, pasted, colors=colours, threshold=MASK_THRESHOLD)
    draw_boxes(scene.main, boxes, labels=found["labels"][shown], class_names=scene.class_names, colors=colours)
    scene.counts.update(masks=len(shown))
    scene.main.set_title(f"masks pasted into their boxes, cut at {MASK_THRESHOLD}", fontsize=10)
    if scene.lineage is not None:
        scene.mark(scene.lineage.refined, "refined")
    followed = scene.lineage
    if followed is None and len(shown):
        followed = detection_lineage(trace, int(shown[0]))
    if followed is None:
        _side_note(scene.side, "no detection scores this high:\nlower the min score")
    else:
        probabilities = to_numpy(followed.mask)
        image = scene.side.imshow(probabilities, cmap="viridis", vmin=0.0, vmax=1.0)
        scene.side.contour(probabilities, levels=[MASK_THRESHOLD], colors="white", linewidths=1.0)
        scene.side.figure.colorbar(image, ax=scene.side, fraction=0.046, pad=0.04, label="probability")
        side = probabilities.shape[-1]
        scene.side.set_title(f"detection {followed.detection} ({scene.name(followed.label)}): its {side} x {side} "
                             f"mask", fontsize=10)
    size = tuple(found["masks"].shape[-2:])
    return (f"Masks: for each of the {len(shown)} detections scoring >= {scene.score_threshold:.2f} the mask head "
            f"predicts a {size[0]} x {size[1]} mask for the detected class only, resized into its box (pasted).")


def _stage_final(scene: _Scene) -> str:
    trace = scene.trace
    found = trace.detections[0]
    height, width = trace.original_sizes[0]
    show_image(scene.main, trace.image(0), extent=(0, width, height, 0))  # back in the original pixels
    shown = (found["scores"] >= scene.score_threshold).nonzero()[:, 0]  # the final scores (rescored, if so)
    labels = found["labels"][shown]
    palette = class_colors(trace.heads.class_scores[0].shape[1])
    colours = [tuple(palette[label]) for label in to_numpy(labels)]
    draw_masks(scene.main, found["masks"][shown], colors=colours, threshold=MASK_THRESHOLD)
    draw_boxes(scene.main, found["boxes"][shown], labels=labels, scores=found["scores"][shown],
               class_names=scene.class_names, colors=colours)
    if scene.lineage is not None:
        scene.mark(scene.lineage.final_box, "detection")
    scene.counts.update(detections=len(shown), returned=len(found["scores"]))
    scene.main.set_title(f"detections with score >= {scene.score_threshold:.2f}, original pixels", fontsize=10)
    scores = to_numpy(found["scores"])
    names = [f"{d}: {scene.name(label)}" for d, label in enumerate(to_numpy(found["labels"]))]
    bar_colours = [tuple(palette[label]) + ((1.0,) if s >= scene.score_threshold else (0.3,))
                   for label, s in zip(to_numpy(found["labels"]), scores)]
    bars = scene.side.barh(names[::-1], scores[::-1], color=bar_colours[::-1])
    if scene.lineage is not None:
        followed = bars[len(scores) - 1 - scene.lineage.detection]
        followed.set_edgecolor(HIGHLIGHT)
        followed.set_linewidth(3)
    scene.side.axvline(scene.score_threshold, color="black", linestyle="--")
    scene.side.set_xlim(0, 1)
    scene.side.tick_params(axis="y", labelsize=8)
    scene.side.set_title(f"the model's {len(scores)} detections by score (dashed: min score)", fontsize=10)
    by_class = {}
    for label in to_numpy(labels):
        by_class[scene.name(label)] = by_class.get(scene.name(label), 0) + 1
    classes = ", ".join(f"{count} {name}" for name, count in by_class.items()) or "none"
    return (f"Detections: {len(shown)} of the model's {len(scores)} detections score >= {scene.score_threshold:.2f} "
            f"({classes}), drawn in the original {height} x {width} image's pixels.")


_STAGE_DRAWINGS: dict[str, Callable[[_Scene], str]] = dict(zip(STAGES, (
    _stage_input, _stage_anchors, _stage_objectness, _stage_refined, _stage_nms, _stage_proposals, _stage_rois,
    _stage_class_scores, _stage_class_nms, _stage_masks, _stage_final,
)))


def _lineage_sentence(scene: _Scene) -> str:
    lineage = scene.lineage
    return (f" Magenta: detection {lineage.detection} ({scene.name(lineage.label)}, {lineage.score:.2f}), from anchor "
            f"{lineage.anchor_index} at {_level_name(lineage.anchor_level)} (objectness {lineage.objectness:.2f}) via "
            f"proposal {lineage.roi}.")


STEPPER_FIGURE_SIZE = (11.0, 5.2)  # inches: 880 x 416 pixels at DPI


def stepper_view(trace, stage: str, score_threshold: float = 0.5, detection: int | None = None,
                 config=None, class_names: Sequence[str] | None = None) -> StepperView:
    """The detection stepper's view of a one-image inference ``trace`` (``model.trace(image)``).

    ``stage``: one of :data:`STAGES`. ``score_threshold``: the least class score of the boxes drawn
    from the box head on (class scores, per-class NMS, masks, final detections). ``detection``:
    ``None``, or an index into ``trace.detections[0]`` to follow back to its anchor (drawn in
    magenta at every stage). ``config``: the model's ``Config``, for the thresholds the captions
    quote and the class names (``class_names`` overrides those).

    Returns a :class:`StepperView`: the figure (the image with the stage's boxes, and a side panel),
    a caption with the stage's counts, and those counts. Raises ``ValueError`` naming the argument
    for an unknown stage, a threshold outside 0..1, or a detection index out of range.
    """
    if stage not in _STAGE_DRAWINGS:
        raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError(f"score_threshold must be in 0..1, got {score_threshold!r}")
    if len(trace.batch.image_sizes) != 1:
        raise ValueError(f"trace must hold one image, it holds {len(trace.batch.image_sizes)}")
    _need_inference(trace)
    lineage = None if detection is None else detection_lineage(trace, detection)
    if class_names is None:
        class_names = tuple(getattr(config, "class_names", None) or ())
    figure = Figure(figsize=STEPPER_FIGURE_SIZE, layout="constrained")
    main, side = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    scene = _Scene(trace, float(score_threshold), lineage, class_names, config, main, side)
    if stage != "final detections":  # that stage draws the image at its original size itself
        show_image(main, trace.image(0))
    caption = _STAGE_DRAWINGS[stage](scene)
    if lineage is not None:
        caption += _lineage_sentence(scene)
    figure.suptitle(f"{STAGES.index(stage) + 1}/{len(STAGES)}: {stage}", fontsize=12)
    shown = [int(d) for d in _shown(trace, score_threshold)]
    return StepperView(figure, caption, stage, scene.counts, scene.highlighted, shown)


# Images ---------------------------------------------------------------------------------------

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "shapes_sample"


def _photo(array: np.ndarray, longest_side: int) -> Tensor:
    """A uint8 ``[H, W, 3]`` photograph -> float ``[3, h, w]`` in 0..1, its longest side at most ``longest_side``."""
    image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0
    scale = longest_side / max(image.shape[-2:])
    if scale < 1.0:
        size = [max(1, round(side * scale)) for side in image.shape[-2:]]
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return image.clamp(0.0, 1.0)


def default_images(num_shapes: int = 3, sample_dir=None, photo_size: int = 256) -> dict[str, Tensor]:
    """Images for the stepper, name -> float ``[3, H, W]`` in 0..1:

    * ``"shapes 0"`` .. : ``num_shapes`` Shapes images (``ShapesDataset(num_shapes, seed=3)``);
    * ``"sample <id>"``: the 20 images of the shipped COCO-format sample (``data/shapes_sample`` of the
      repository, or ``sample_dir``);
    * ``"astronaut"``, ``"coffee"``, ``"chelsea"``: scikit-image's photographs, their longest side
      shrunk to ``photo_size`` pixels (the Shapes model knows only squares, circles and triangles:
      see what it makes of a photograph).

    Raises ``FileNotFoundError`` naming the folder when the shipped sample is missing.
    """
    from skimage import data as skimage_data

    from ..data import CocoDataset, ShapesDataset

    sample_dir = SAMPLE_DIR if sample_dir is None else Path(sample_dir).expanduser()
    annotations = sample_dir / "annotations.json"
    if not annotations.is_file():
        raise FileNotFoundError(
            f"default_images: the shipped Shapes sample is not at {sample_dir} (no annotations.json). It lives in "
            "the repository's data/shapes_sample/ (an installed package without the repository does not have it): "
            "pass sample_dir=..., or give the stepper your own images."
        )
    images = {}
    shapes = ShapesDataset(num_shapes, seed=3)
    for i in range(num_shapes):
        images[f"shapes {i}"] = shapes[i][0]
    sample = CocoDataset(sample_dir / "images", annotations)
    for i in range(len(sample)):
        image, target = sample[i]
        images[f"sample {target['image_id']}"] = image
    for name in ("astronaut", "coffee", "chelsea"):
        images[name] = _photo(getattr(skimage_data, name)(), photo_size)
    return images


def _checked_images(images) -> dict[str, Tensor]:
    if isinstance(images, Mapping):
        named = {str(name): image for name, image in images.items()}
    elif isinstance(images, (list, tuple)):
        named = {f"image {i}": image for i, image in enumerate(images)}
    else:
        raise ValueError("images must be a dict name -> [3, H, W] tensor or a list of them, "
                         f"got {type(images).__name__}")
    if not named:
        raise ValueError("images is empty: give the stepper at least one [3, H, W] image")
    for name, image in named.items():
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"images[{name!r}] must be a float [3, H, W] tensor in 0..1, got {shape}")
    return named


# The widget ------------------------------------------------------------------------------------


class DetectionStepper(ShowsStaticPicture):
    """Walk through detection on one image, stage by stage, and follow one detection back.

    ``DetectionStepper(model, images=None)``: ``images`` a dict name -> ``[3, H, W]`` float tensor
    in 0..1, or a list (default :func:`default_images`). Controls (``controls``):

    * ``image``: which image (its trace is computed once, on first use, and cached in ``traces``);
    * ``stage``: one of :data:`STAGES`, also moved by the ``previous`` / ``next`` buttons;
    * ``score_threshold``: the least class score shown from the box head on;
    * ``detection``: ``None`` or a detection (those scoring at least the threshold) to follow, in
      magenta, back through its mask, refinement, proposal and anchor.

    Every change recomputes ``state`` (a :class:`StepperView` from :func:`stepper_view`) and, with
    ``draw=True``, the picture. The model is only traced (``model.trace``): it is left unchanged.
    Display the stepper as the last expression of a cell.
    """

    def __init__(self, model, images=None, stage: str = "input", score_threshold: float = 0.5, draw: bool = True):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise ValueError(f"score_threshold must be in 0..1, got {score_threshold!r}")
        self.model = model
        self.images = _checked_images(default_images() if images is None else images)
        self.traces: dict = {}
        self.draw = draw
        self._refreshing = False
        self.controls = {
            "image": described(widgets.Dropdown(options=list(self.images), description="image"), 440, 70),
            "score_threshold": described(
                widgets.FloatSlider(value=score_threshold, min=0.0, max=1.0, step=0.05, description="min score",
                                    continuous_update=False, readout_format=".2f"), 440, 80),
            "stage": described(widgets.Dropdown(options=list(STAGES), value=stage, description="stage"), 330, 50),
            "detection": described(widgets.Dropdown(options=[("none", None)], index=0, description="follow"),
                                    360, 60),
        }
        button = widgets.Layout(width="100px")
        self.previous = widgets.Button(description="◀ previous", layout=button, tooltip="the stage before")
        self.next = widgets.Button(description="next ▶", layout=button, tooltip="the stage after")
        self.previous.on_click(lambda _button: self.step(-1))
        self.next.on_click(lambda _button: self.step(+1))
        self.caption = widgets.HTML(layout=widgets.Layout(width=f"{COLUMN_WIDTH_PX - 20}px", max_width="100%",
                                                          margin="0"))
        picture_px = int(STEPPER_FIGURE_SIZE[0] * DPI)
        self.image = picture_widget(picture_px)
        self.widget = widgets.VBox(
            [
                row([self.controls["image"], self.controls["score_threshold"]]),
                row([self.previous, self.controls["stage"], self.next, self.controls["detection"]]),
                self.caption,
                self.image,
            ],
            layout=widgets.Layout(width=f"{COLUMN_WIDTH_PX}px", max_width="100%"),
        )
        self.state: StepperView | None = None
        self.controls["image"].observe(self._on_selection_change, names="value")
        self.controls["score_threshold"].observe(self._on_selection_change, names="value")
        self.controls["stage"].observe(self._on_change, names="value")
        self.controls["detection"].observe(self._on_change, names="value")
        self._refresh_detections()
        self.update()

    # The trace of each image, computed once.
    def trace(self, name: str | None = None):
        """The inference trace of image ``name`` (default: the chosen one), computed on first use."""
        name = self.controls["image"].value if name is None else name
        if name not in self.traces:
            image = self.images[name]
            device = next(self.model.parameters()).device
            self.traces[name] = self.model.trace(image.to(device))
        return self.traces[name]

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def step(self, offset: int) -> None:
        """Move the stage by ``offset`` (the previous / next buttons), staying within the stages."""
        index = STAGES.index(self.controls["stage"].value) + offset
        self.controls["stage"].value = STAGES[min(max(index, 0), len(STAGES) - 1)]

    def update(self) -> StepperView:
        """Recompute the view from the controls (and redraw it); return it."""
        values = self.values()
        config = getattr(self.model, "config", None)
        self.state = stepper_view(self.trace(values["image"]), values["stage"], values["score_threshold"],
                                  values["detection"], config=config)
        style = "font-size:13px; margin:4px 0; line-height:1.4"
        self.caption.value = f"<p style='{style}'>{html.escape(self.state.caption)}</p>"
        if self.draw:
            self.image.value = figure_png(self.state.figure)
        index = STAGES.index(values["stage"])
        self.previous.disabled, self.next.disabled = index == 0, index == len(STAGES) - 1
        return self.state

    def _refresh_detections(self) -> None:
        """The follow menu lists the chosen image's detections that pass the threshold; the followed
        detection stays chosen while it passes."""
        trace = self.trace()
        found = trace.heads.detections[0]
        names = tuple(getattr(getattr(self.model, "config", None), "class_names", None) or ())
        options = [("none", None)]
        for d in _shown(trace, self.controls["score_threshold"].value).tolist():
            label = int(found["labels"][d])
            name = names[label] if label < len(names) else f"class {label}"
            options.append((f"{d}: {name} {float(found['scores'][d]):.2f}", d))
        menu = self.controls["detection"]
        values = [value for _, value in options]
        self._refreshing = True
        try:
            chosen = values.index(menu.value) if menu.value in values else 0
            menu.options = options
            menu.index = chosen  # by index: a value of None would show an empty menu, not "none"
        finally:
            self._refreshing = False

    def _on_selection_change(self, change) -> None:
        self._refresh_detections()
        self.update()

    def _on_change(self, change) -> None:
        if not self._refreshing:
            self.update()

    def _picture(self) -> tuple[bytes | None, str]:
        png = bytes(self.image.value) if self.draw and self.image.value else None
        return png, self.state.caption
