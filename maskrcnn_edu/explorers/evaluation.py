"""Chapter 08's explorer: a score threshold and an IoU threshold pick an *operating point* on the
precision-recall curve, and one image shows which of its detections are right at that point.

AP summarises a whole ranking, but a deployed detector keeps only the detections above one score
threshold: one point of the curve, with one precision and one recall. This module matches every
detection of an evaluated set once, at each of COCO's ten IoU thresholds (``match_results``), so
that any threshold, class and image can then be looked up without matching again:

* ``curve(matched, category, iou_threshold)``: the ranked list of a class (or of all classes
  together) as a ``evaluation.Curve``; for one class it is the very curve of
  ``evaluate_detections(...).curve(category, iou_threshold)``.
* ``operating_point(...)``: precision and recall of the detections scoring ``>= score_threshold``.
* ``image_outcome(...)``: one image's true positives, false positives and missed objects at that
  point; ``image_errors(...)`` ranks the images by their mistakes (the chapter's failure gallery).

Matching is COCO's (``evaluation.match_detections``): per image and class, detections
in order of score each take the best free object they overlap by the IoU threshold. A score
threshold keeps the best detections of every image, so the kept ones are matched exactly as in the
full ranking: thresholding is cutting the ranked list, and the operating point lies on the curve.

``evaluation_view`` draws the curve with its point and the image's matches; ``evaluation_explorer``
wraps it in a class menu and threshold and image sliders.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import ipywidgets as widgets
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from ..evaluation.ap import (IOU_THRESHOLDS, MAX_DETECTIONS, RECALL_LEVELS, Curve, match_detections,
                             precision_recall_curve)
from ..evaluation.matching import coco_ious, coco_shape
from ..visualize import draw_boxes, show_image
from .shell import Explorer, View

__all__ = [
    "ALL_CLASSES",
    "MatchedDetections",
    "OperatingPoint",
    "ImageOutcome",
    "match_results",
    "curve",
    "operating_point",
    "image_outcome",
    "image_errors",
    "FALSE_POSITIVE_KINDS",
    "false_positive_kinds",
    "draw_operating_point",
    "draw_image_outcome",
    "legend_handles",
    "EvaluationView",
    "evaluation_view",
    "evaluation_explorer",
]

ALL_CLASSES = "all"  # the class menu's entry for every class ranked together
# What each kind of box looks like in the image panel (the colours of visualize.draw_matches):
# detections solid, ground truth dashed.
COLOURS = {"true positive": "tab:green", "false positive": "tab:orange", "missed": "tab:red",
           "found": "tab:green"}


@dataclass
class MatchedDetections:
    """Every detection of a set, matched to the objects at each IoU threshold of ``IOU_THRESHOLDS``.

    Detections ``[D]`` are grouped by image and class, best score first within a group (each
    image's best ``MAX_DETECTIONS[-1]`` per class, as COCO keeps); objects ``[G]`` in annotation
    order. Boxes are ``(x0, y0, x1, y1)`` in the image's pixels.
    """

    iou_type: str  # "bbox" or "segm": what the IoUs were computed on
    class_names: dict  # category id -> name
    image_ids: list  # [I] the evaluated images
    detection_result: np.ndarray  # [D] index into the results list
    detection_image: np.ndarray  # [D] image id
    detection_category: np.ndarray  # [D] category id
    detection_score: np.ndarray  # [D]
    detection_box: np.ndarray  # [D, 4]
    detection_match: np.ndarray  # [T, D] the object (index) each detection took at each threshold, -1 none
    detection_ignored: np.ndarray  # [T, D] bool: matched a crowd region, neither right nor wrong
    object_annotation: np.ndarray  # [G] index into ground_truth["annotations"]
    object_image: np.ndarray  # [G] image id
    object_category: np.ndarray  # [G] category id
    object_box: np.ndarray  # [G, 4]
    object_crowd: np.ndarray  # [G] bool: crowd regions are not objects to find
    detection_best_iou: np.ndarray  # [D] the largest IoU with an object of its own class
    detection_best_other_iou: np.ndarray  # [D] the largest IoU with an object of another class

    def threshold_index(self, iou_threshold: float) -> int:
        """The index ``t`` of ``iou_threshold`` in ``IOU_THRESHOLDS`` (0.50, 0.55, ..., 0.95)."""
        t = np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou_threshold))
        if t.size == 0:
            raise ValueError(
                f"iou_threshold must be one of {np.round(IOU_THRESHOLDS, 2).tolist()}, got {iou_threshold}")
        return int(t[0])

    def category_id(self, category) -> int | None:
        """``None`` for ``ALL_CLASSES``, else the id of ``category`` (its name or id)."""
        if category == ALL_CLASSES:
            return None
        for category_id, name in self.class_names.items():
            if category in (name, category_id):
                return category_id
        raise ValueError(f"category {category!r} is none of {[ALL_CLASSES, *self.class_names.values()]}")


def _xyxy(bbox) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _indices(ground_truth: dict, results: list[dict]) -> tuple[list, dict, dict]:
    """The annotations of known images and categories (``known``: their indices in the ground truth),
    and ``{(image id, category id): indices}`` of those objects and of the results."""
    class_names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    image_ids = {image["id"] for image in ground_truth["images"]}
    known = [g for g, a in enumerate(ground_truth["annotations"])
             if a["category_id"] in class_names and a["image_id"] in image_ids]
    objects, detections = defaultdict(list), defaultdict(list)  # (image id, category id) -> indices
    for g, index in enumerate(known):  # g: the object's index among the known annotations
        annotation = ground_truth["annotations"][index]
        objects[annotation["image_id"], annotation["category_id"]].append(g)
    for d, result in enumerate(results):
        if result["category_id"] in class_names and result["image_id"] in image_ids:
            detections[result["image_id"], result["category_id"]].append(d)
    return known, objects, detections


def _stacked(parts: list[np.ndarray], dtype) -> np.ndarray:
    """``[T, D_k]`` arrays side by side -> ``[T, D]`` (``[T, 0]`` without any)."""
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(IOU_THRESHOLDS), 0), dtype=dtype)


def match_results(ground_truth: dict, results: list[dict], iou_type: str = "bbox") -> MatchedDetections:
    """Match COCO ``results`` to a COCO ``ground_truth`` dict at every IoU threshold, as COCOeval does.

    Inputs as ``evaluation.evaluate_detections`` takes them; here results and annotations both
    need ``bbox`` (for the drawings), and ``segmentation`` too for ``"segm"``. Every image of the
    ground truth is evaluated; results and annotations of unknown categories or images are left out."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    sizes = {image["id"]: (image.get("height"), image.get("width")) for image in ground_truth["images"]}
    known, objects, detections = _indices(ground_truth, results)
    annotations = [ground_truth["annotations"][g] for g in known]
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)  # [G]
    order, matches, ignored = [], [], []
    for key in sorted(detections):  # one image and class at a time, as COCO matches
        chosen, taken = _match_group(results, detections[key], annotations, objects.get(key, []), crowd,
                                     iou_type, sizes[key[0]])
        order.extend(chosen.tolist())
        matches.append(taken)
        ignored.append((taken >= 0) & np.append(crowd, False)[taken])  # took a crowd region; -1 reads False
    best_own, best_other = _best_overlaps(results, order, annotations, crowd, iou_type, sizes)
    return MatchedDetections(
        iou_type=iou_type,
        class_names={c["id"]: c["name"] for c in ground_truth["categories"]},
        image_ids=[image["id"] for image in ground_truth["images"]],
        detection_result=np.array(order, dtype=int),
        detection_image=np.array([results[d]["image_id"] for d in order], dtype=int),
        detection_category=np.array([results[d]["category_id"] for d in order], dtype=int),
        detection_score=np.array([results[d]["score"] for d in order], dtype=float),
        detection_box=np.array([_xyxy(results[d]["bbox"]) for d in order], dtype=float).reshape(-1, 4),
        detection_match=_stacked(matches, int),
        detection_ignored=_stacked(ignored, bool),
        object_annotation=np.array(known, dtype=int),
        object_image=np.array([a["image_id"] for a in annotations], dtype=int),
        object_category=np.array([a["category_id"] for a in annotations], dtype=int),
        object_box=np.array([_xyxy(a["bbox"]) for a in annotations], dtype=float).reshape(-1, 4),
        object_crowd=crowd,
        detection_best_iou=best_own,
        detection_best_other_iou=best_other,
    )


def _match_group(results, detection_ids, annotations, object_ids, crowd, iou_type, size):
    """One image's detections and objects of one class -> ``chosen [D_k]`` (result indices, best
    score first, at most ``MAX_DETECTIONS[-1]``) and ``taken [T, D_k]`` (annotation index taken at
    each threshold, -1 none)."""
    chosen = np.array(detection_ids)
    scores = np.array([results[d]["score"] for d in chosen])
    chosen = chosen[np.argsort(-scores, kind="mergesort")][: MAX_DETECTIONS[-1]]  # best first, ties in order
    object_ids = np.array(object_ids, dtype=int)  # [G_k]
    ious = coco_ious([coco_shape(results[d], iou_type, size) for d in chosen],
                     [coco_shape(annotations[g], iou_type, size) for g in object_ids],
                     crowd[object_ids])  # [D_k, G_k]; a crowd's IoU is the intersection / detection's area
    local = match_detections(ious, crowd[object_ids], crowd[object_ids])  # [T, D_k] into object_ids, -1 none
    return chosen, np.where(local >= 0, np.append(object_ids, -1)[local], -1)


def _best_overlaps(results, order, annotations, crowd, iou_type, sizes) -> tuple[np.ndarray, np.ndarray]:
    """For each detection ``results[order[d]]``: its largest IoU with an object (not a crowd) of its
    own class, and with one of another class, in its image -> two ``[D]`` arrays."""
    best_own, best_other = np.zeros(len(order)), np.zeros(len(order))
    by_image = defaultdict(list)
    for g, annotation in enumerate(annotations):
        if not crowd[g]:
            by_image[annotation["image_id"]].append(g)
    positions = defaultdict(list)
    for d, r in enumerate(order):
        positions[results[r]["image_id"]].append(d)
    for image_id, ds in positions.items():
        objects = by_image.get(image_id, [])
        if not objects:
            continue
        size = sizes[image_id]
        ious = coco_ious([coco_shape(results[order[d]], iou_type, size) for d in ds],
                         [coco_shape(annotations[g], iou_type, size) for g in objects],
                         np.zeros(len(objects), dtype=bool))  # [D_i, G_i]
        same = np.array([results[order[d]]["category_id"] for d in ds])[:, None] == np.array(
            [annotations[g]["category_id"] for g in objects])[None, :]
        best_own[ds] = np.where(same, ious, 0.0).max(axis=1)
        best_other[ds] = np.where(same, 0.0, ious).max(axis=1)
    return best_own, best_other


# ---------------------------------------------------------------------------------------------
# The curve and a point on it
# ---------------------------------------------------------------------------------------------


def curve(matched: MatchedDetections, category=ALL_CLASSES, iou_threshold: float = 0.5) -> Curve:
    """The precision-recall curve of ``category`` (name or id; ``ALL_CLASSES``: every class's
    detections ranked together against all objects) at ``iou_threshold``. Detections on crowd
    regions are left out, as COCO leaves them out."""
    t = matched.threshold_index(iou_threshold)
    category_id = matched.category_id(category)
    chosen = ~matched.detection_ignored[t]  # [D]
    objects = ~matched.object_crowd  # [G]
    if category_id is not None:
        chosen &= matched.detection_category == category_id
        objects &= matched.object_category == category_id
    num_objects = int(objects.sum())
    if num_objects == 0:
        raise ValueError(f"category {category!r} has no ground-truth object: it has no curve")
    right = matched.detection_match[t, chosen] >= 0
    return precision_recall_curve(matched.detection_score[chosen], right, num_objects)


@dataclass
class OperatingPoint:
    """The detections scoring ``>= score_threshold``, as one point of a precision-recall curve."""

    score_threshold: float
    iou_threshold: float
    kept: int  # detections kept
    true_positives: int
    num_objects: int  # objects to find

    @property
    def false_positives(self) -> int:
        return self.kept - self.true_positives

    @property
    def missed(self) -> int:
        return self.num_objects - self.true_positives

    @property
    def precision(self) -> float:
        """Right among the kept; 1.0 when nothing is kept (no mistake made), as the curve starts."""
        return self.true_positives / self.kept if self.kept else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.num_objects


def operating_point(ranked: Curve, score_threshold: float, iou_threshold: float) -> OperatingPoint:
    """Where ``score_threshold`` cuts the ranked list ``ranked`` (``curve``'s, made at ``iou_threshold``)."""
    kept = int((ranked.scores >= score_threshold).sum())  # scores are sorted: the best `kept` detections
    return OperatingPoint(float(score_threshold), float(iou_threshold), kept,
                          int(ranked.is_true_positive[:kept].sum()), ranked.num_ground_truth)


# ---------------------------------------------------------------------------------------------
# One image at the operating point
# ---------------------------------------------------------------------------------------------


@dataclass
class ImageOutcome:
    """One image's detections (kept at a score threshold) and objects, sorted out at an IoU threshold.
    Indices into ``MatchedDetections``' detections and objects."""

    image_id: int
    true_positives: np.ndarray  # [TP] detection indices
    false_positives: np.ndarray  # [FP] detection indices
    found: np.ndarray  # [TP] object indices, in the order of true_positives
    missed: np.ndarray  # [M] object indices

    def counts(self) -> str:
        """``"2 right, 1 false positive, 0 missed"``."""
        false_positives = len(self.false_positives)
        return (f"{len(self.true_positives)} right, {false_positives} false positive"
                f"{'' if false_positives == 1 else 's'}, {len(self.missed)} missed")


def image_outcome(matched: MatchedDetections, image_id: int, iou_threshold: float = 0.5,
                  score_threshold: float = 0.5, category=ALL_CLASSES) -> ImageOutcome:
    """Which of ``image_id``'s detections scoring ``>= score_threshold`` are right at ``iou_threshold``,
    and which of its objects no kept detection found (one class, or ``ALL_CLASSES``)."""
    if image_id not in matched.image_ids:
        raise ValueError(f"image_id {image_id} is not among the {len(matched.image_ids)} evaluated images")
    t = matched.threshold_index(iou_threshold)
    category_id = matched.category_id(category)
    detections = ((matched.detection_image == image_id) & (matched.detection_score >= score_threshold)
                  & ~matched.detection_ignored[t])
    objects = (matched.object_image == image_id) & ~matched.object_crowd
    if category_id is not None:
        detections &= matched.detection_category == category_id
        objects &= matched.object_category == category_id
    kept = np.flatnonzero(detections)
    taken = matched.detection_match[t, kept]
    found = taken[taken >= 0]
    return ImageOutcome(image_id, kept[taken >= 0], kept[taken < 0], found,
                        np.setdiff1d(np.flatnonzero(objects), found))


def image_errors(matched: MatchedDetections, iou_threshold: float = 0.5,
                 score_threshold: float = 0.5) -> list[ImageOutcome]:
    """Every image's outcome (all classes), most mistakes (false positives + missed) first; ties by id."""
    outcomes = [image_outcome(matched, i, iou_threshold, score_threshold) for i in matched.image_ids]
    return sorted(outcomes, key=lambda o: (-(len(o.false_positives) + len(o.missed)), o.image_id))


FALSE_POSITIVE_KINDS = ("duplicate", "wrong class", "poorly placed", "background")


def false_positive_kinds(matched: MatchedDetections, detections, iou_threshold: float = 0.5,
                         near: float = 0.1) -> list[str]:
    """Why each of ``detections`` (indices of false positives at ``iou_threshold``) is wrong, the
    first that applies of ``FALSE_POSITIVE_KINDS``:

    * ``"duplicate"``: it overlaps an object of its class by the threshold, but a better-scored
      detection took that object;
    * ``"wrong class"``: it overlaps an object of another class by the threshold;
    * ``"poorly placed"``: it overlaps an object of its class, by ``near`` or more but less than the
      threshold (a loose box, or a fragment of an occluded object);
    * ``"background"``: none of these.
    """
    kinds = []
    for d in np.asarray(detections, dtype=int):
        if matched.detection_best_iou[d] >= iou_threshold:
            kinds.append("duplicate")
        elif matched.detection_best_other_iou[d] >= iou_threshold:
            kinds.append("wrong class")
        elif matched.detection_best_iou[d] >= near:
            kinds.append("poorly placed")
        else:
            kinds.append("background")
    return kinds


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def draw_operating_point(ax: Axes, ranked: Curve, point: OperatingPoint, title: str | None = None) -> Axes:
    """The raw curve, COCO's interpolated envelope, and the operating point with its precision and recall."""
    ax.plot(np.r_[0.0, ranked.recall], np.r_[1.0, ranked.precision], color="tab:blue", lw=1.2,
            drawstyle="steps-post", label="raw (each detection)")
    ax.plot(RECALL_LEVELS, ranked.interpolated, color="tab:purple", lw=1.5, ls="--",
            label=f"interpolated: AP {ranked.ap:.3f}")
    ax.plot([point.recall], [point.precision], "o", color="black", ms=8, zorder=3,
            label=f"score >= {point.score_threshold:.2f}: P {point.precision:.2f}, R {point.recall:.2f}")
    ax.axvline(point.recall, color="black", lw=0.6, ls=":")
    ax.axhline(point.precision, color="black", lw=0.6, ls=":")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.05), xlabel="recall", ylabel="precision", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return ax


def legend_handles() -> list[Line2D]:
    """The legend entries of ``draw_image_outcome`` (for a figure of several images: one legend)."""
    kinds = (("true positive", "right"), ("false positive", "false positive"), ("found", "object found"),
             ("missed", "object missed"))
    return [Line2D([], [], color=COLOURS[kind], ls="--" if kind in ("missed", "found") else "-", lw=2,
                   label=text)
            for kind, text in kinds]


def draw_image_outcome(ax: Axes, image, matched: MatchedDetections, outcome: ImageOutcome,
                       title: str | None = None, legend: bool = True) -> Axes:
    """The image with its true positives (green) and false positives (orange), captioned with class
    and score, the objects they found (green, dashed) and the missed objects (red, dashed)."""
    show_image(ax, image, title=title)
    names = [matched.class_names.get(k, str(k)) for k in range(max(matched.class_names, default=0) + 1)]
    for kind, indices in (("found", outcome.found), ("missed", outcome.missed)):
        for x0, y0, x1, y1 in matched.object_box[indices]:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=COLOURS[kind],
                                   linestyle="--", linewidth=2.0 if kind == "missed" else 1.2))
    for kind, indices in (("true positive", outcome.true_positives),
                          ("false positive", outcome.false_positives)):
        draw_boxes(ax, matched.detection_box[indices], labels=matched.detection_category[indices],
                   scores=matched.detection_score[indices], class_names=names, colors=COLOURS[kind],
                   linewidth=1.5)
    if legend:
        ax.legend(handles=legend_handles(), loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2,
                  fontsize=8, frameon=False)
    return ax


@dataclass
class EvaluationView(View):
    """The explorer's view with its numbers: the curve, the operating point, the image's outcome."""

    curve: Curve | None = None
    point: OperatingPoint | None = None
    outcome: ImageOutcome | None = None


def evaluation_view(matched: MatchedDetections, image_of: Callable, category=ALL_CLASSES,
                    iou_threshold: float = 0.5, score_threshold: float = 0.5, image_index: int = 0,
                    draw: bool = True) -> EvaluationView:
    """The curve of ``category`` at ``iou_threshold`` with the point ``score_threshold`` picks, and
    image ``matched.image_ids[image_index]`` (``image_of(image_id)`` gives its ``[3, H, W]`` pixels)."""
    if not 0 <= image_index < len(matched.image_ids):
        raise ValueError(f"image_index must be in 0..{len(matched.image_ids) - 1}, got {image_index}")
    iou_threshold = float(IOU_THRESHOLDS[matched.threshold_index(iou_threshold)])
    ranked = curve(matched, category, iou_threshold)
    point = operating_point(ranked, score_threshold, iou_threshold)
    image_id = matched.image_ids[image_index]
    outcome = image_outcome(matched, image_id, iou_threshold, score_threshold, category)
    caption = (f"{category} at IoU >= {iou_threshold:.2f}, score >= {score_threshold:.2f}: "
               f"{point.kept} detections kept, {point.true_positives} right of {point.num_objects} objects: "
               f"precision {point.precision:.3f}, recall {point.recall:.3f} (AP {ranked.ap:.3f}) · "
               f"image {image_id}: {outcome.counts()}")
    figure = Figure(figsize=(10, 4.6), layout="constrained")
    if draw:
        ax_curve, ax_image = figure.subplots(1, 2, width_ratios=[1.25, 1])
        draw_operating_point(ax_curve, ranked, point, title=f"{category}, IoU >= {iou_threshold:.2f}")
        draw_image_outcome(ax_image, image_of(image_id), matched, outcome,
                           title=f"image {image_id}: {outcome.counts()}")
        ax_image.title.set_fontsize(10)
    return EvaluationView(figure, caption, ranked, point, outcome)


def evaluation_explorer(matched: MatchedDetections, image_of: Callable, image_index: int = 0,
                        draw: bool = True) -> Explorer:
    """A class menu, IoU and score threshold sliders and an image slider over ``evaluation_view``."""
    controls = {
        "category": widgets.Dropdown(options=[ALL_CLASSES, *matched.class_names.values()], value=ALL_CLASSES,
                                     description="class", layout=widgets.Layout(width="220px")),
        "iou_threshold": widgets.SelectionSlider(options=[round(float(t), 2) for t in IOU_THRESHOLDS],
                                                 value=0.5, description="IoU threshold",
                                                 continuous_update=False),
        "score_threshold": widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01,
                                               description="score threshold", continuous_update=False),
        "image_index": widgets.IntSlider(value=image_index, min=0, max=len(matched.image_ids) - 1,
                                         description="image (index)", continuous_update=False),
    }
    return Explorer(controls, lambda **values: evaluation_view(matched, image_of, draw=draw, **values),
                    draw=draw)
