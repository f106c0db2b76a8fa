"""COCO's average precision, step by step: the numbers pycocotools' ``COCOeval`` reports, in numpy.

**Right or wrong.** A detection is a *true positive* when it overlaps an object of its own class
by an intersection over union (IoU) of at least a threshold, and no better-scored detection has
claimed that object already; otherwise it is a *false positive* (a duplicate, a wrong place, a
wrong class). Each image and class is matched on its own (``match_detections``): detections in
order of score, each taking the unclaimed object it overlaps most.

**Precision and recall.** Rank every detection of a class, from all images, by score. After the
first ``n``, *precision* is the fraction of them that are right and *recall* the fraction of the
objects found. Walking down the ranking, recall only grows, while precision drops at each false
positive and climbs back at each true one: a sawtooth (``precision_recall``).

**Average precision (AP)** summarises that curve in one number, the area under it, computed COCO's
way: first the sawtooth is filled in, the precision at recall ``r`` becoming the best precision
reached at recall ``r`` *or higher* (a monotone envelope: one would happily go further down the
ranking if that raised precision); then the envelope is read at the 101 recall levels 0, 0.01,
..., 1 and averaged, a level that is never reached counting 0 (``interpolated_precision``).

**COCO's AP** is that AP averaged over the classes and over ten IoU thresholds 0.50, 0.55, ...,
0.95, so that a box must be found *and* placed well; ``AP50`` and ``AP75`` use one threshold
each. ``APs``, ``APm``, ``APl`` repeat it for small, medium and large objects (area below 32²
pixels, between 32² and 96², above 96²). The average recall ``AR1``, ``AR10``, ``AR100`` is the
recall reached by each image's best 1, 10 or 100 detections of a class, averaged over thresholds
and classes; ``ARs``, ``ARm``, ``ARl`` by size. (AP also keeps only 100 detections per image and
class.) Those are the twelve numbers of ``COCOeval.stats`` (``SUMMARY_NAMES``); ``coco_stats``
computes them and equals ``COCOeval`` to within rounding (the tests check 1e-9).

**Details COCO adds, and this module follows:**

* *Crowd regions* (``iscrowd`` 1: a crowd of people drawn as one mask) are not objects to find.
  A detection on one is *ignored*: neither right nor wrong. Its overlap is the intersection over
  the *detection's* area, and any number of detections may land on one crowd.
* *Area ranges*: an object outside the range is ignored like a crowd (a detection that matches it
  is ignored too), and so is a detection outside the range that matches nothing. An object's area
  is its annotation's ``area`` field; a detection's is its box's (``"bbox"``) or its mask's
  (``"segm"``). The ranges include both ends, as COCO's do. (``coco_stats`` sizes detections as
  pycocotools' ``COCO.loadRes`` does, which takes a segm result's area from its box when it has
  one: ``reading.loadres_sizes_by_box``.)
* A class with no object to find (in an area range) has no recall, hence no AP: it is left out of
  the averages. If every class is left out the number is undefined: ``-1`` in ``coco_stats``, as
  COCOeval gives; ``nan`` in the arrays of ``Evaluation``; ``None`` in tables.
* Ties: detections of equal score keep the order of the images (by id), then of the results; of
  two objects a detection overlaps equally, it takes the later one. Both as COCOeval does.

What COCOeval throws away, ``Evaluation`` keeps: the raw and interpolated precision-recall curve of
each class at each IoU threshold (``Evaluation.curve``), a per-class table (``Evaluation.per_class``);
``analyses.confusion_matrix`` tells which class each object was detected as, or that it was missed.

IoUs come from pycocotools' ``mask.iou`` (C code, the very numbers COCOeval compares: ``matching.coco_ious``),
masks are pycocotools' RLEs; everything else is here. ``evaluation.coco`` runs COCOeval itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .matching import coco_ious
from .reading import (DETECTION_AREAS, NOTHING, Instances, check_iou_type, image_sizes, read_detections,
                      read_objects)

__all__ = [
    "AREA_RANGES", "IOU_THRESHOLDS", "MAX_DETECTIONS", "RECALL_LEVELS", "SUMMARY_NAMES", "Curve",
    "Evaluation", "coco_stats", "evaluate_detections", "interpolated_precision", "match_detections",
    "precision_recall", "precision_recall_curve",
]

# The very floats COCOeval uses (its np.linspace calls), so that an IoU of exactly a threshold is
# decided the same way: 0.50, 0.55, ..., 0.95 and 0, 0.01, ..., 1.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # [T]
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)  # [R]
# Object areas in pixels, both ends included; 1e10 stands for "no upper bound".
AREA_RANGES = {"all": (0, 1e10), "small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e10)}  # [A]
MAX_DETECTIONS = (1, 10, 100)  # [M] per image and class

# The order of COCOeval.stats.
SUMMARY_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# name: (averaged array, IoU threshold index (all ten: None), area range, detections per image)
_SUMMARY = {
    "AP": ("precision", None, "all", 100),
    "AP50": ("precision", 0, "all", 100),  # IOU_THRESHOLDS[0] == 0.50
    "AP75": ("precision", 5, "all", 100),  # IOU_THRESHOLDS[5] == 0.75
    "APs": ("precision", None, "small", 100),
    "APm": ("precision", None, "medium", 100),
    "APl": ("precision", None, "large", 100),
    "AR1": ("recall", None, "all", 1),
    "AR10": ("recall", None, "all", 10),
    "AR100": ("recall", None, "all", 100),
    "ARs": ("recall", None, "small", 100),
    "ARm": ("recall", None, "medium", 100),
    "ARl": ("recall", None, "large", 100),
}


# ---------------------------------------------------------------------------------------------
# One ranked list: precision, recall, AP (small enough to work by hand)
# ---------------------------------------------------------------------------------------------


def precision_recall(is_true_positive, num_ground_truth: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection of a ranked list (the raw, sawtooth curve).

    ``is_true_positive [D]`` bool, best-scoring detection first; ``num_ground_truth``: how many
    objects there were to find. Returns ``precision [D]`` and ``recall [D]``: after the first
    ``n`` detections, (true positives among them) / ``n`` and (true positives) / objects.
    """
    if num_ground_truth <= 0:
        raise ValueError(f"num_ground_truth must be positive (recall is found / to find), "
                         f"got {num_ground_truth}")
    true_positives = np.cumsum(np.asarray(is_true_positive, dtype=bool))  # [D]
    ranks = np.arange(1, len(true_positives) + 1)  # [D] detections so far
    return true_positives / ranks, true_positives / num_ground_truth


def interpolated_precision(precision, recall, recall_levels=RECALL_LEVELS) -> np.ndarray:
    """COCO's interpolated precision: at each recall level, the best precision at that recall or higher.

    ``precision [D]``, ``recall [D]``: the points of a ranked list (``precision_recall``).
    Returns ``[R]``, one value per ``recall_levels``; 0 at a level the list never reaches. The
    average of the 101 values is the list's AP.
    """
    precision, recall = np.asarray(precision, dtype=float), np.asarray(recall, dtype=float)
    if len(precision) == 0:
        return np.zeros(len(recall_levels))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # [D] the best precision from here down
    first = np.searchsorted(recall, recall_levels, side="left")  # [R] first point with recall >= level
    reached = first < len(recall)
    return np.where(reached, envelope[np.minimum(first, len(recall) - 1)], 0.0)


@dataclass
class Curve:
    """A ranked list of detections against the objects it should find: one class, one IoU threshold.

    ``precision`` and ``recall`` are the raw points, one per detection (the sawtooth);
    ``interpolated`` is COCO's envelope read at ``RECALL_LEVELS``; ``ap`` its mean.
    """

    scores: np.ndarray  # [D] best first
    is_true_positive: np.ndarray  # [D] bool
    num_ground_truth: int
    precision: np.ndarray  # [D]
    recall: np.ndarray  # [D]
    interpolated: np.ndarray  # [R]

    @property
    def ap(self) -> float:
        return float(self.interpolated.mean())


def precision_recall_curve(scores, is_true_positive, num_ground_truth: int) -> Curve:
    """Rank detections by score and compute their precision, recall and 101-point AP.

    ``scores [D]``, ``is_true_positive [D]`` in any order; ``num_ground_truth``: objects to find.
    Equal scores keep their given order (a stable sort, as COCOeval's). For example, two objects
    and three detections scored 0.9 (right), 0.8 (wrong), 0.7 (right) give precision 1, 1/2, 2/3
    at recall 1/2, 1/2, 1; the envelope is 1 up to recall 0.5 and 2/3 beyond, so
    AP = (51 * 1 + 50 * 2/3) / 101 = 0.835.
    """
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="mergesort")  # best first; ties keep their order
    is_true_positive = np.asarray(is_true_positive, dtype=bool)[order]
    precision, recall = precision_recall(is_true_positive, num_ground_truth)
    return Curve(scores[order], is_true_positive, int(num_ground_truth), precision, recall,
                 interpolated_precision(precision, recall))


# ---------------------------------------------------------------------------------------------
# Matching one image's detections of one class to its objects
# ---------------------------------------------------------------------------------------------


def match_detections(ious, object_ignored, object_crowd, iou_thresholds=IOU_THRESHOLDS) -> np.ndarray:
    """Greedy matching, at each IoU threshold, of one image's detections of a class to its objects.

    ``ious [D, G]``: detections in order of score (best first) by objects; ``object_ignored [G]``
    bool: objects that count neither as found nor as missed (crowds, outside the area range);
    ``object_crowd [G]`` bool: crowd regions, which any number of detections may match.
    Returns ``matches [T, D]``: the object each detection took at each threshold, ``-1`` for none.

    Each detection in turn takes, among the objects it overlaps by IoU >= the threshold and that
    are still free (or crowds), the one it overlaps most: an object that counts if it can, an
    ignored one only otherwise. Of equal overlaps it takes the later object, as COCOeval does.
    """
    ious, iou_thresholds = np.asarray(ious, dtype=float), np.asarray(iou_thresholds, dtype=float)
    object_ignored, object_crowd = np.asarray(object_ignored, bool), np.asarray(object_crowd, bool)
    num_detections, num_objects = ious.shape
    matches = np.full((len(iou_thresholds), num_detections), -1)
    if num_objects == 0:
        return matches
    taken = np.zeros((len(iou_thresholds), num_objects), dtype=bool)  # [T, G]
    for d in range(num_detections):
        candidates = (ious[d] >= iou_thresholds[:, None]) & (~taken | object_crowd)  # [T, G]
        counted = candidates & ~object_ignored
        candidates = np.where(counted.any(axis=1, keepdims=True), counted, candidates)
        overlap = np.where(candidates, ious[d], -1.0)  # [T, G]
        best = num_objects - 1 - np.argmax(overlap[:, ::-1], axis=1)  # [T] the last of the largest
        found = candidates.any(axis=1)  # [T]
        matches[found, d] = best[found]
        taken[found, best[found]] = True
    return matches


# ---------------------------------------------------------------------------------------------
# One image, one category: matching in each area range
# ---------------------------------------------------------------------------------------------


@dataclass
class _ImageCategory:
    """One image's objects and detections of one category, as matching needs them."""

    ious: np.ndarray  # [D, G]
    scores: np.ndarray  # [D] best first, at most MAX_DETECTIONS[-1]
    detection_areas: np.ndarray  # [D]
    object_areas: np.ndarray  # [G]
    object_crowd: np.ndarray  # [G] bool


def _image_category(objects: Instances | None, detections: Instances | None) -> _ImageCategory:
    objects, detections = objects or NOTHING, detections or NOTHING
    # Best first, ties in input order; past the 100th a detection never counts: no IoU for it.
    best = np.argsort(-detections.scores, kind="mergesort")[: MAX_DETECTIONS[-1]]
    ious = coco_ious([detections.shapes[i] for i in best], objects.shapes, objects.crowd)
    return _ImageCategory(ious, detections.scores[best], detections.areas[best], objects.areas, objects.crowd)


@dataclass
class _Matched:
    """One image's detections of one category after matching, in one area range."""

    scores: np.ndarray  # [D] best first
    true_positive: np.ndarray  # [T, D] bool
    ignored: np.ndarray  # [T, D] bool: neither right nor wrong
    num_objects: int  # objects to find: not crowds, area in range


def _match_in_range(pair: _ImageCategory, area_range: tuple) -> _Matched:
    low, high = area_range
    object_ignored = pair.object_crowd | (pair.object_areas < low) | (pair.object_areas > high)
    matches = match_detections(pair.ious, object_ignored, pair.object_crowd)  # [T, D]
    matched = matches >= 0
    on_ignored = np.append(object_ignored, False)[matches]  # [T, D]; no match (-1) reads the False
    outside = (pair.detection_areas < low) | (pair.detection_areas > high)  # [D]
    ignored = on_ignored | (~matched & outside)
    return _Matched(pair.scores, matched & ~ignored, ignored, int((~object_ignored).sum()))


def _curves(matched: list[_Matched], max_detections: int) -> list[Curve] | None:
    """One curve per IoU threshold: the detections of all images ranked together (each image's
    best ``max_detections``, ignored ones left out). ``None`` if there is no object to find."""
    num_objects = sum(m.num_objects for m in matched)
    if num_objects == 0:
        return None
    scores = np.concatenate([m.scores[:max_detections] for m in matched])  # [D]
    true_positive = np.concatenate([m.true_positive[:, :max_detections] for m in matched], axis=1)  # [T, D]
    kept = ~np.concatenate([m.ignored[:, :max_detections] for m in matched], axis=1)  # [T, D]
    return [precision_recall_curve(scores[k], tp[k], num_objects) for tp, k in zip(true_positive, kept)]


def _evaluate_category(pairs: list[_ImageCategory]):
    """One category over all images -> ``precision [T, R, A, M]`` and ``recall [T, A, M]`` (``nan``
    without objects to find), ``num_objects [A]``, and its ``T`` curves (all sizes, 100 detections;
    none without objects)."""
    T, R, A, M = len(IOU_THRESHOLDS), len(RECALL_LEVELS), len(AREA_RANGES), len(MAX_DETECTIONS)
    precision, recall = np.full((T, R, A, M), np.nan), np.full((T, A, M), np.nan)
    num_objects = np.zeros(len(AREA_RANGES), dtype=int)
    curves_to_keep = []
    for a, area_range in enumerate(AREA_RANGES.values()):
        matched = [_match_in_range(pair, area_range) for pair in pairs]
        num_objects[a] = sum(m.num_objects for m in matched)
        for m, max_detections in enumerate(MAX_DETECTIONS):
            curves = _curves(matched, max_detections)  # [T], or None
            if curves is None:
                continue
            precision[:, :, a, m] = [curve.interpolated for curve in curves]
            recall[:, a, m] = [curve.recall[-1] if len(curve.recall) else 0.0 for curve in curves]
            if area_range == AREA_RANGES["all"] and max_detections == MAX_DETECTIONS[-1]:
                curves_to_keep = curves
    return precision, recall, num_objects, curves_to_keep


# ---------------------------------------------------------------------------------------------
# The whole evaluation
# ---------------------------------------------------------------------------------------------


def _mean_defined(values: np.ndarray) -> float | None:
    """The mean of the entries that are not ``nan``; ``None`` if there are none."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else None


@dataclass
class Evaluation:
    """What ``evaluate_detections`` found, laid out as COCOeval's ``eval`` arrays.

    Axes: ``T`` IoU thresholds (``IOU_THRESHOLDS``), ``R`` recall levels (``RECALL_LEVELS``),
    ``K`` categories (``categories``, by id), ``A`` area ranges (``AREA_RANGES``: all, small,
    medium, large), ``M`` detections per image (``MAX_DETECTIONS``). ``nan`` where a category has
    no object in an area range (COCOeval writes -1 there).
    """

    iou_type: str
    categories: list[dict]  # [K] {"id", "name"}, by id
    precision: np.ndarray  # [T, R, K, A, M] interpolated precision
    recall: np.ndarray  # [T, K, A, M] recall reached
    num_ground_truth: np.ndarray  # [K, A] objects to find (not crowds)
    curves: dict  # {(k, t): Curve}, all areas, 100 detections per image

    def summary(self) -> dict[str, float | None]:
        """The twelve numbers of ``SUMMARY_NAMES``; ``None`` where undefined."""
        areas, max_detections = list(AREA_RANGES), list(MAX_DETECTIONS)
        summary = {}
        for name, (kind, t, area, count) in _SUMMARY.items():
            values = getattr(self, kind)[..., areas.index(area), max_detections.index(count)]
            summary[name] = _mean_defined(values if t is None else values[t])
        return summary

    def stats(self) -> list[float]:
        """``COCOeval.stats``: the twelve numbers in order, ``-1`` where undefined."""
        return [-1.0 if value is None else value for value in self.summary().values()]

    def per_class(self) -> list[dict]:
        """One row per category: ``class``, ``category_id``, ``AP`` (IoU 0.50:0.95), ``AP50``,
        ``AP75`` (all sizes, 100 detections; ``None`` without objects), ``ground_truth`` (count)."""
        rows = []
        for k, category in enumerate(self.categories):
            precision = self.precision[:, :, k, 0, -1]  # [T, R]
            rows.append({
                "class": category["name"], "category_id": category["id"], "AP": _mean_defined(precision),
                "AP50": _mean_defined(precision[0]), "AP75": _mean_defined(precision[5]),
                "ground_truth": int(self.num_ground_truth[k, 0]),
            })
        return rows

    def curve(self, category, iou_threshold: float = 0.5) -> Curve:
        """The precision-recall curve of ``category`` (its name or id) at ``iou_threshold`` (one of
        ``IOU_THRESHOLDS``), all sizes, 100 detections per image. Its ``ap`` is that class's AP there."""
        k = next((k for k, c in enumerate(self.categories) if category in (c["name"], c["id"])), None)
        if k is None:
            raise ValueError(f"category {category!r} is none of {[c['name'] for c in self.categories]}")
        t = np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou_threshold))
        if t.size == 0:
            raise ValueError(f"iou_threshold must be one of {np.round(IOU_THRESHOLDS, 2).tolist()}, "
                             f"got {iou_threshold}")
        if (k, int(t[0])) not in self.curves:
            raise ValueError(f"category {category!r} has no ground-truth object: it has no curve")
        return self.curves[k, int(t[0])]


def evaluate_detections(ground_truth: dict, results: list[dict], iou_type: str = "bbox",
                        detection_area: str = "shape") -> Evaluation:
    """Score COCO ``results`` against a COCO ``ground_truth``, as COCOeval does, and keep the curves.

    ``ground_truth``: a COCO-format dict (``images`` with ``id``, ``height``, ``width``;
    ``annotations`` with ``image_id``, ``category_id``, ``area``, ``bbox`` or ``segmentation``,
    optionally ``iscrowd``; ``categories`` with ``id``, ``name``). ``results``: COCO's results
    format, one dict per detection (``image_id``, ``category_id``, ``score``, and ``bbox``
    ``[x, y, w, h]`` or ``segmentation`` (RLE)). ``iou_type``: ``"bbox"`` or ``"segm"``.
    As in COCOeval, every image of the ground truth is scored, and annotations and results of
    categories not in ``categories`` are left out.

    ``detection_area`` decides a detection's size range. ``"shape"``: the area of what is scored,
    its box for ``"bbox"``, its mask for ``"segm"``: COCOeval's numbers when ``loadRes`` is given
    segm results without their boxes, as ``coco.evaluate_results`` gives them (and torchvision's
    references). ``"loadRes"``: as pycocotools' ``COCO.loadRes`` reads the results as they are,
    a segm result with a ``bbox`` sized by its box (``reading.loadres_sizes_by_box``): what
    ``coco_stats`` uses.
    """
    check_iou_type(iou_type)
    if detection_area not in DETECTION_AREAS:
        raise ValueError(f"detection_area must be one of {DETECTION_AREAS}, got {detection_area!r}")
    sizes = image_sizes(ground_truth, iou_type)
    objects = read_objects(ground_truth, iou_type, sizes)
    detections = read_detections(results, iou_type, sizes, detection_area)
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    categories = [{"id": i, "name": names[i]} for i in sorted(names)]
    T, R, K = len(IOU_THRESHOLDS), len(RECALL_LEVELS), len(categories)
    A, M = len(AREA_RANGES), len(MAX_DETECTIONS)
    precision, recall = np.full((T, R, K, A, M), np.nan), np.full((T, K, A, M), np.nan)
    num_ground_truth, curves = np.zeros((K, A), dtype=int), {}
    for k, category in enumerate(categories):
        keys = [(i, category["id"]) for i in sorted(sizes)]
        keys = [key for key in keys if key in objects or key in detections]
        pairs = [_image_category(objects.get(key), detections.get(key)) for key in keys]
        precision[:, :, k], recall[:, k], num_ground_truth[k], category_curves = _evaluate_category(pairs)
        curves.update({(k, t): curve for t, curve in enumerate(category_curves)})
    return Evaluation(iou_type, categories, precision, recall, num_ground_truth, curves)


def coco_stats(ground_truth: dict, results: list[dict], iou_type: str) -> list[float]:
    """The twelve numbers of ``COCOeval.stats`` (``SUMMARY_NAMES``, in that order), ``-1`` where
    COCOeval gives ``-1``, computed by ``evaluate_detections`` without COCOeval.

    The results are read as pycocotools' ``COCO.loadRes`` reads them, so that this equals
    ``COCOeval`` given ``loadRes(results)``: for ``"segm"``, results that carry a ``bbox`` as well
    as a ``segmentation`` (as detectron2 writes them to a results file) are sized by their boxes
    (``w * h``), which decides their size range (``APs``, ``APm``, ``APl`` and the ARs). The
    project's own evaluation (``coco.evaluate_results``, ``coco.coco_evaluate``) gives ``loadRes``
    segm results without their boxes, sized by their masks, as torchvision's references and
    detectron2's evaluation do: its numbers are ``evaluate_detections(..., detection_area="shape")``'s,
    or these for results without ``bbox``.
    """
    return evaluate_detections(ground_truth, results, iou_type, detection_area="loadRes").stats()
