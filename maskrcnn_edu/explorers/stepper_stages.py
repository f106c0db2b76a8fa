"""The detection stepper's stages (``explorers.stepper``): one function per stage draws it on the
image (the main panel) with the chapter figures' own drawer (``visualize.stages`` and
``visualize.head_stages``: ``draw_X_on``), fills the side panel, marks the followed detection in
magenta and returns the caption. ``STAGE_DRAWINGS``: stage name -> function, in the stages' order."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor

from ..boxes import box_iou
from ..masks import paste_masks
from ..model import DetectionLineage
from ..visualize import head_stages, stages
from ..visualize.primitives import (
    class_colors, class_name, draw_box, draw_boxes, draw_detections, draw_feature_map, draw_masks,
    level_colour, level_name, show_image, to_numpy, widen_view, zoom_view,
)

__all__ = ["Scene", "STAGE_DRAWINGS", "shown_detections", "lineage_sentence"]

TOP_K_DRAWN = 30  # boxes drawn in the crowded RPN stages (the captions count all of them)
NMS_DRAWN = 40  # candidates drawn of each NMS outcome (kept, cut, suppressed), the best by score
HIGHLIGHT = "magenta"  # the followed detection's boxes
MASK_THRESHOLD = 0.5


@dataclass
class Scene:
    """What a stage's drawing function needs: the trace, the controls' values, the two axes."""

    trace: object
    score_threshold: float
    lineage: DetectionLineage | None  # the followed detection (``Trace.lineage``)
    class_names: Sequence[str]
    config: object
    main: Axes
    side: Axes
    counts: dict = field(default_factory=dict)
    highlighted: dict = field(default_factory=dict)

    def name(self, label: int) -> str:
        return class_name(label, self.class_names)

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


def _side_note(ax: Axes, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, color="0.35",
            transform=ax.transAxes)


def _zoom(ax: Axes, image: Tensor, boxes: Sequence[tuple[Tensor, str, str]], title: str) -> None:
    """The image zoomed onto ``boxes``: ``(box [4], colour, linestyle)`` each."""
    show_image(ax, image)
    for box, colour, linestyle in boxes:
        draw_box(ax, to_numpy(box), color=colour, linestyle=linestyle, linewidth=2.5)
    zoom_view(ax, torch.stack([box for box, _, _ in boxes]))
    ax.set_title(title, fontsize=10)


def _outcome_bars(ax: Axes, outcome: stages.NMSOutcome, groups: Tensor, names: dict[int, str]) -> None:
    """Stacked bars, one per group (``groups [T]``: each candidate's FPN level or class; ``names``:
    group -> bar name): how many of its candidates NMS kept, cut by the top-k and suppressed."""
    bottom = np.zeros(len(names))
    keys = list(names)
    for outcome_name, (_, colour, text) in reversed(stages.NMS_STYLES.items()):  # kept at the bottom
        members = groups[getattr(outcome, outcome_name)]
        heights = torch.bincount(members, minlength=max(keys, default=0) + 1)[keys].numpy() if keys else []
        ax.bar(list(names.values()), heights, bottom=bottom, color=colour or "tab:green",
               alpha=0.45 if outcome_name == "suppressed" else 0.9, label=text)
        bottom = bottom + heights
    if keys:
        ax.legend(fontsize=8)


def _stage_input(scene: Scene) -> str:
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


def _stage_anchors(scene: Scene) -> str:
    trace = scene.trace
    per_level = [len(level) for level in trace.rpn.anchors]
    per_cell = trace.rpn.objectness[0].shape[1]
    scene.counts.update(anchors=sum(per_level), per_level=per_level, per_cell=per_cell)
    stages.draw_cell_anchors_on(scene.main, trace)
    if scene.lineage is not None:
        scene.mark(scene.lineage.anchor, "anchor", linestyle=":")
        widen_view(scene.main, scene.lineage.anchor)
    scene.main.set_title("one cell's anchors at every level (dotted), centred on the image", fontsize=10)
    names = [level_name(level) for level in range(len(per_level))]
    scene.side.bar(names, per_level, color=[level_colour(level) for level in range(len(per_level))])
    scene.side.set_yscale("log")
    scene.side.set_ylabel("anchors")
    scene.side.set_title(f"anchors per level ({per_cell} per cell)", fontsize=10)
    counts = ", ".join(f"{name}: {count}" for name, count in zip(names, per_level))
    return (f"Anchors: {per_cell} boxes of different shapes per feature-map cell at each of the "
            f"{len(per_level)} FPN levels, {sum(per_level)} anchors in all ({counts}).")


def _anchor_level(trace, anchor_index: int) -> int:
    """The FPN level (0 = P2) of anchor ``anchor_index`` of ``torch.cat(trace.rpn.anchors)``."""
    ends = np.cumsum([len(level) for level in trace.rpn.anchors])
    return int(np.searchsorted(ends, anchor_index, side="right"))


def _stage_objectness(scene: Scene) -> str:
    trace = scene.trace
    top, scores = stages.top_anchors(trace, 0, TOP_K_DRAWN)
    anchors, candidates = sum(len(level) for level in trace.rpn.anchors), len(trace.rpn.pre_nms_boxes[0])
    scene.counts.update(anchors=anchors, candidates=candidates, drawn=len(top))
    stages.draw_top_objectness_on(scene.main, trace, 0, TOP_K_DRAWN)
    level = _anchor_level(trace, int(top[0])) if scene.lineage is None else scene.lineage.anchor_level
    if scene.lineage is not None:
        scene.mark(scene.lineage.anchor, "anchor", linestyle=":")
    scene.main.set_title(f"the {len(top)} anchors with the highest objectness (dotted)", fontsize=10)
    heat = trace.rpn.objectness[level][0].sigmoid().amax(dim=0)  # [H_l, W_l]: best anchor of each cell
    draw_feature_map(scene.side, heat, cmap="viridis", vmin=0.0, vmax=1.0, grid=False, colorbar=True,
                     title=f"objectness at {level_name(level)}, best anchor of each cell")
    per_level = scene.setting("rpn_pre_nms_top_n_test")
    keep = f"the best {per_level} of each level" if per_level else "the best of each level"
    return (f"Objectness: the RPN scores all {anchors} anchors; {keep} ({candidates} in all) go on. "
            f"Drawn: the {len(top)} best ({float(scores.min()):.2f} to {float(scores.max()):.2f}).")


def _stage_refined(scene: Scene) -> str:
    trace = scene.trace
    top, _ = stages.top_anchors(trace, 0, TOP_K_DRAWN)
    anchors, refined = torch.cat(trace.rpn.anchors)[top], trace.rpn.decoded_boxes[0, top]
    stages.draw_refinements_on(scene.main, trace, 0, TOP_K_DRAWN)
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
    _zoom(scene.side, trace.image(0), [(anchor, HIGHLIGHT, ":"), (box, HIGHLIGHT, "-")],
          f"{title}: IoU {iou:.2f}")
    return (f"Refinement: each anchor is moved by its four predicted deltas (dx, dy, dw, dh). Drawn: the "
            f"{len(top)} best anchors (dotted) and their boxes (solid); mean IoU of anchor and box "
            f"{mean_iou:.2f}.")


def _stage_nms(scene: Scene) -> str:
    trace = scene.trace
    outcome, levels = stages.rpn_nms_outcome(trace), trace.rpn.pre_nms_levels[0]
    counts = outcome.counts()
    scene.counts.update(candidates=len(levels), **counts)
    stages.draw_nms_on(scene.main, trace, 0, limit=NMS_DRAWN)
    if scene.lineage is not None:
        scene.mark(scene.lineage.proposal, "proposal")
    scene.main.set_title(f"the best {NMS_DRAWN} boxes of each kind", fontsize=10)
    names = {level: level_name(level) for level in levels.unique().tolist()}
    _outcome_bars(scene.side, outcome, levels, names)
    scene.side.set_title("boxes per level, by what NMS and the top-k made of them", fontsize=10)
    iou, post = scene.setting("rpn_nms_thresh"), scene.setting("rpn_post_nms_top_n_test")
    rule = f"IoU > {iou}" if iou is not None else "a high IoU"
    top_k = f"the best {post}" if post is not None else "the best"
    return (f"NMS: of the {len(levels)} candidates, {counts['suppressed']} overlap a better box of their "
            f"level by {rule} and are suppressed; of the {counts['kept'] + counts['cut']} survivors only "
            f"{top_k} go on ({counts['cut']} cut): {counts['kept']} proposals.")


def _stage_proposals(scene: Scene) -> str:
    trace = scene.trace
    proposals, scores = trace.rpn.proposals[0], trace.rpn.proposal_scores[0]
    drawn = min(TOP_K_DRAWN, len(proposals))
    scene.counts.update(proposals=len(proposals), drawn=drawn)
    stages.draw_proposals_on(scene.main, trace, 0, TOP_K_DRAWN, colour_by="objectness")
    if scene.lineage is not None:
        scene.mark(scene.lineage.proposal, "proposal")
    scene.main.set_title(f"the {drawn} best proposals, coloured by objectness", fontsize=10)
    scene.side.hist(to_numpy(scores), bins=20, range=(0.0, 1.0), color="tab:blue")
    scene.side.set_yscale("log")
    scene.side.set_xlabel("objectness")
    scene.side.set_title(f"objectness of the {len(proposals)} proposals", fontsize=10)
    if scene.lineage is not None:
        scene.side.axvline(scene.lineage.objectness, color=HIGHLIGHT, linewidth=2)
    low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 0.0)
    return (f"Proposals: the {len(proposals)} boxes that survived NMS and the top-k (objectness {low:.2f} to "
            f"{high:.2f}) are the regions the box head will classify; the best {drawn} are drawn.")


def _stage_rois(scene: Scene) -> str:
    trace = scene.trace
    rois, levels = trace.heads.proposals[0], trace.heads.roi_levels[0] - 2  # level index: 0 = P2
    order = trace.rpn.proposal_scores[0].argsort(descending=True, stable=True)[:2 * TOP_K_DRAWN]
    colours = [level_colour(level) for level in levels[order]]
    draw_boxes(scene.main, rois[order], style="dotted", colors=colours)
    if scene.lineage is not None:
        scene.mark(scene.lineage.proposal, "proposal", linestyle=":")
    # The heads read P2..P5 (level indices 0..3).
    per_level = {level_name(level): int((levels == level).sum()) for level in range(4)}
    scene.counts.update(rois=len(rois), per_level=per_level)
    scene.main.set_title(f"{len(order)} RoIs (dotted), coloured by the level they are read from", fontsize=10)
    scene.side.bar(list(per_level), list(per_level.values()), color=[level_colour(k) for k in range(4)])
    scene.side.set_ylabel("RoIs")
    scene.side.set_title("RoIs per FPN level (bigger boxes read coarser levels)", fontsize=10)
    size = tuple(trace.heads.box_features_shape[1:])
    counts = ", ".join(f"{name}: {count}" for name, count in per_level.items() if count)
    return (f"RoIs: each of the {len(rois)} RoIs is read from the FPN level that suits its size ({counts}); "
            f"RoIAlign cuts a {size[1]} x {size[2]} x {size[0]} grid from it for the box head.")


def _class_score_panel(scene: Scene, best_score: Tensor) -> None:
    """The side panel of the class scores: the followed RoI's scores, or every RoI's best."""
    if scene.lineage is not None:
        scores = scene.lineage.class_scores
        names = [scene.name(k) for k in range(len(scores))]
        bars = scene.side.bar(names, to_numpy(scores), color=[tuple(c) for c in class_colors(len(scores))])
        bars[scene.lineage.label].set_edgecolor(HIGHLIGHT)
        bars[scene.lineage.label].set_linewidth(3)
        scene.side.set_ylim(0, 1)
        scene.side.set_title(f"class scores of the followed detection's RoI {scene.lineage.roi}", fontsize=10)
        return
    scene.side.hist(to_numpy(best_score), bins=20, range=(0.0, 1.0), color="tab:blue")
    scene.side.axvline(scene.score_threshold, color="black", linestyle="--", label="min score")
    scene.side.set_yscale("log")
    scene.side.set_xlabel("best object-class score")
    scene.side.legend(fontsize=8)
    scene.side.set_title("each RoI's best object-class score", fontsize=10)


def _stage_class_scores(scene: Scene) -> str:
    trace = scene.trace
    best_score, _ = head_stages.best_object_class(trace)
    passing = int((best_score >= scene.score_threshold).sum())
    num_classes, drawn = trace.heads.class_scores[0].shape[1], min(passing, 20)
    head_stages.draw_roi_refinement_on(scene.main, trace, 0, drawn, scene.class_names,
                                       min_score=scene.score_threshold)
    scene.counts.update(rois=len(best_score), passing=passing, classes=num_classes)
    scene.main.set_title("RoIs (dotted) refined for their best class (solid), "
                         f"score >= {scene.score_threshold:.2f}", fontsize=10)
    if scene.lineage is not None:
        scene.mark(scene.lineage.proposal, "proposal", linestyle=":")
        scene.mark(scene.lineage.refined, "refined")
    _class_score_panel(scene, best_score)
    return (f"Box head: each of the {len(best_score)} RoIs gets a softmax over {num_classes} classes and one "
            f"refinement per class; {passing} RoIs score >= {scene.score_threshold:.2f} for an object class "
            f"(drawn: the best {drawn}, RoI dotted, its class's refinement solid).")


def _stage_class_nms(scene: Scene) -> str:
    trace = scene.trace
    labels, scores = trace.heads.pre_nms[0]["labels"], trace.heads.pre_nms[0]["scores"]
    shown = scores >= scene.score_threshold
    outcome = head_stages.class_nms_outcome(trace).where(shown)
    counts = outcome.counts()
    scene.counts.update(candidates=int(shown.sum()), **counts)
    head_stages.draw_class_nms_on(scene.main, trace, 0, class_names=scene.class_names,
                                  min_score=scene.score_threshold)
    if scene.lineage is not None:
        scene.mark(scene.lineage.refined, "refined")
    scene.main.set_title(f"per-class NMS of the candidates scoring >= {scene.score_threshold:.2f}",
                         fontsize=10)
    names = {label: scene.name(label) for label in labels[shown].unique().tolist()}
    _outcome_bars(scene.side, outcome, labels, names)
    scene.side.set_title(f"candidates per class, score >= {scene.score_threshold:.2f}", fontsize=10)
    iou, cap = scene.setting("box_nms_thresh"), scene.setting("detections_per_img")
    rule = f"IoU > {iou}" if iou is not None else "a high IoU"
    top_k = f"the model returns at most {cap}" if cap is not None else "the model returns the best"
    return (f"Per-class NMS: {int(shown.sum())} class-specific boxes score >= {scene.score_threshold:.2f}; "
            f"within each class a box overlapping a better one by {rule} is suppressed "
            f"({counts['suppressed']}); of the {counts['kept'] + counts['cut']} survivors {top_k} "
            f"({counts['cut']} cut): {counts['kept']} detections.")


def shown_detections(trace, score_threshold: float) -> Tensor:
    """``[D]``: indices of the detections scoring at least ``score_threshold``."""
    return (trace.heads.detections[0]["scores"] >= score_threshold).nonzero()[:, 0]


def _mask_panel(scene: Scene, shown: Tensor) -> None:
    """The side panel of the masks: the followed detection's 28 x 28 probabilities (or those of the
    best detection shown)."""
    followed = scene.lineage
    if followed is None and len(shown):
        followed = scene.trace.lineage(int(shown[0]))
    if followed is None:
        _side_note(scene.side, "no detection scores this high:\nlower the min score")
        return
    probabilities = to_numpy(followed.mask)
    image = scene.side.imshow(probabilities, cmap="viridis", vmin=0.0, vmax=1.0)
    scene.side.contour(probabilities, levels=[MASK_THRESHOLD], colors="white", linewidths=1.0)
    scene.side.figure.colorbar(image, ax=scene.side, fraction=0.046, pad=0.04, label="probability")
    side = probabilities.shape[-1]
    name = scene.name(followed.label)
    scene.side.set_title(f"detection {followed.detection} ({name}): its {side} x {side} mask", fontsize=10)


def _stage_masks(scene: Scene) -> str:
    trace = scene.trace
    found = trace.heads.detections[0]
    shown = shown_detections(trace, scene.score_threshold)
    boxes = found["boxes"][shown]
    palette = class_colors(trace.heads.class_scores[0].shape[1])
    colours = [tuple(palette[label]) for label in to_numpy(found["labels"][shown])]
    aligned = getattr(scene.config, "aligned", False)
    image_size = trace.batch.image_sizes[0]
    pasted = paste_masks(found["masks"][shown], boxes, image_size, aligned=aligned)  # [D, 1, h, w]
    draw_masks(scene.main, pasted, colors=colours, threshold=MASK_THRESHOLD)
    draw_boxes(scene.main, boxes, labels=found["labels"][shown], class_names=scene.class_names,
               colors=colours)
    scene.counts.update(masks=len(shown))
    scene.main.set_title(f"masks pasted into their boxes, cut at {MASK_THRESHOLD}", fontsize=10)
    if scene.lineage is not None:
        scene.mark(scene.lineage.refined, "refined")
    _mask_panel(scene, shown)
    size = tuple(found["masks"].shape[-2:])
    return (f"Masks: for each of the {len(shown)} detections scoring >= {scene.score_threshold:.2f} the mask "
            f"head predicts a {size[0]} x {size[1]} mask for the detected class only, resized into its box "
            "(pasted).")


def _score_bars(scene: Scene, palette: np.ndarray) -> None:
    """The side panel of the final detections: every detection's score against the threshold."""
    found = scene.trace.detections[0]
    scores, labels = to_numpy(found["scores"]), to_numpy(found["labels"])
    names = [f"{d}: {scene.name(label)}" for d, label in enumerate(labels)]
    colours = [tuple(palette[label]) + ((1.0,) if s >= scene.score_threshold else (0.3,))
               for label, s in zip(labels, scores)]
    bars = scene.side.barh(names[::-1], scores[::-1], color=colours[::-1])
    if scene.lineage is not None:
        followed = bars[len(scores) - 1 - scene.lineage.detection]
        followed.set_edgecolor(HIGHLIGHT)
        followed.set_linewidth(3)
    scene.side.axvline(scene.score_threshold, color="black", linestyle="--")
    scene.side.set_xlim(0, 1)
    scene.side.tick_params(axis="y", labelsize=8)
    scene.side.set_title(f"the model's {len(scores)} detections by score (dashed: min score)", fontsize=10)


def _stage_final(scene: Scene) -> str:
    trace = scene.trace
    found = trace.detections[0]
    height, width = trace.original_sizes[0]
    # The chapters' drawing of the model's output: the resized image stretched back to original pixels.
    draw_detections(scene.main, trace.image(0), found, scene.class_names, scene.score_threshold,
                    MASK_THRESHOLD, by_class=True, extent=(0, width, height, 0))
    shown = (found["scores"] >= scene.score_threshold).nonzero()[:, 0]  # the final scores (rescored, if so)
    labels = found["labels"][shown]
    palette = class_colors(trace.heads.class_scores[0].shape[1])
    if scene.lineage is not None:
        scene.mark(scene.lineage.final_box, "detection")
    scene.counts.update(detections=len(shown), returned=len(found["scores"]))
    scene.main.set_title(f"detections with score >= {scene.score_threshold:.2f}, original pixels",
                         fontsize=10)
    _score_bars(scene, palette)
    by_class = {}
    for label in to_numpy(labels):
        by_class[scene.name(label)] = by_class.get(scene.name(label), 0) + 1
    classes = ", ".join(f"{count} {name}" for name, count in by_class.items()) or "none"
    return (f"Detections: {len(shown)} of the model's {len(found['scores'])} detections score >= "
            f"{scene.score_threshold:.2f} ({classes}), drawn in the original {height} x {width} image's "
            "pixels.")


STAGE_DRAWINGS: dict[str, Callable[[Scene], str]] = {  # in the order the stepper steps through them
    "input": _stage_input,
    "anchors": _stage_anchors,
    "objectness top-k": _stage_objectness,
    "refined boxes": _stage_refined,
    "NMS": _stage_nms,
    "proposals": _stage_proposals,
    "RoIs": _stage_rois,
    "class scores and refinement": _stage_class_scores,
    "per-class NMS": _stage_class_nms,
    "masks": _stage_masks,
    "final detections": _stage_final,
}


def lineage_sentence(scene: Scene) -> str:
    lineage = scene.lineage
    return (f" Magenta: detection {lineage.detection} ({scene.name(lineage.label)}, {lineage.score:.2f}), "
            f"from anchor {lineage.anchor_index} at {level_name(lineage.anchor_level)} (objectness "
            f"{lineage.objectness:.2f}) via proposal {lineage.roi}.")
