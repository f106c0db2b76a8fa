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
  (``"segm"``). The ranges include both ends, as COCO's do.
* A class with no object to find (in an area range) has no recall, hence no AP: it is left out of
  the averages. If every class is left out the number is undefined: ``-1`` in ``coco_stats``, as
  COCOeval gives; ``nan`` in the arrays of ``Evaluation``; ``None`` in tables.
* Ties: detections of equal score keep the order of the images (by id), then of the results; of
  two objects a detection overlaps equally, it takes the later one. Both as COCOeval does.

What COCOeval throws away, ``Evaluation`` keeps: the raw and interpolated precision-recall curve of
each class at each IoU threshold (``Evaluation.curve``), a per-class table; ``confusion_matrix``
tells which class each object was detected as, or that it was missed.

IoUs come from pycocotools' ``mask.iou`` (C code, the very numbers COCOeval compares), masks are
pycocotools' RLEs; everything else is here. ``maskrcnn_edu.coco_eval`` runs COCOeval itself.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "MAX_DETECTIONS",
    "RECALL_LEVELS",
    "SUMMARY_NAMES",
    "ConfusionMatrix",
    "Curve",
    "Evaluation",
    "coco_stats",
    "confusion_matrix",
    "evaluate_detections",
    "interpolated_precision",
    "match_detections",
    "precision_recall",
    "precision_recall_curve",
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
IOU_TYPES = ("bbox", "segm")


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
        raise ValueError(f"num_ground_truth must be positive (recall is found / to find), got {num_ground_truth}")
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
# Reading the ground truth and the results, grouped by image and category
# ---------------------------------------------------------------------------------------------


@dataclass
class _Instances:
    """The objects, or the detections, of one image and one category, in input order."""

    shapes: list  # what pycocotools' iou takes: [x, y, w, h] boxes or RLE masks
    areas: np.ndarray  # [N]
    crowd: np.ndarray  # [N] bool (detections: all False)
    scores: np.ndarray  # [N] (objects: zeros)


def _as_rle(segmentation, height: int, width: int) -> dict:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE."""
    if isinstance(segmentation, list):  # polygons, possibly several parts: one mask
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):  # uncompressed RLE (COCO's crowds)
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def _shape(entry: dict, iou_type: str, size: tuple[int, int]):
    return list(map(float, entry["bbox"])) if iou_type == "bbox" else _as_rle(entry["segmentation"], *size)


def _check_fields(entries: list[dict], fields: tuple, what: str) -> None:
    for index, entry in enumerate(entries):
        missing = [field for field in fields if field not in entry]
        if missing:
            raise ValueError(f"{what}[{index}] has no {missing} (it needs {list(fields)})")


def _group(entries: list[dict], image_ids: set) -> dict[tuple, list[dict]]:
    """``{(image id, category id): entries}``, in input order; entries of other images left out."""
    groups = defaultdict(list)
    for entry in entries:
        if entry["image_id"] in image_ids:
            groups[entry["image_id"], entry["category_id"]].append(entry)
    return groups


def _objects(ground_truth: dict, iou_type: str, sizes: dict) -> dict[tuple, _Instances]:
    """The ground truth's annotations by image and category. Their area is the annotation's
    ``area`` field (for COCO, the area of the polygon or mask, whatever the IoU type)."""
    annotations = ground_truth["annotations"]
    shape_key = "bbox" if iou_type == "bbox" else "segmentation"
    _check_fields(annotations, ("image_id", "category_id", "area", shape_key), "ground_truth['annotations']")
    return {
        key: _Instances(
            shapes=[_shape(a, iou_type, sizes[key[0]]) for a in group],
            areas=np.array([a["area"] for a in group], dtype=float),
            crowd=np.array([bool(a.get("iscrowd", 0)) for a in group]),
            scores=np.zeros(len(group)),
        )
        for key, group in _group(annotations, set(sizes)).items()
    }


def _detections(results: list[dict], iou_type: str, sizes: dict) -> dict[tuple, _Instances]:
    """The results by image and category. A detection's area is its box's for ``"bbox"``, its
    mask's for ``"segm"``."""
    shape_key = "bbox" if iou_type == "bbox" else "segmentation"
    _check_fields(results, ("image_id", "category_id", "score", shape_key), "results")
    unknown = sorted({r["image_id"] for r in results} - set(sizes))
    if unknown:
        raise ValueError(f"results name image ids {unknown[:10]} that are not in ground_truth['images']")
    groups = {}
    for key, group in _group(results, set(sizes)).items():
        shapes = [_shape(r, iou_type, sizes[key[0]]) for r in group]
        areas = [s[2] * s[3] for s in shapes] if iou_type == "bbox" else mask_utils.area(shapes)
        groups[key] = _Instances(shapes, np.asarray(areas, dtype=float), np.zeros(len(group), dtype=bool),
                                 np.array([r["score"] for r in group], dtype=float))
    return groups


_NOTHING = _Instances([], np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0))


def _iou(detection_shapes: list, object_shapes: list, crowd: np.ndarray) -> np.ndarray:
    """``[D, G]`` IoU of each detection with each object, by pycocotools (COCOeval's very numbers).
    With a crowd, the intersection is divided by the detection's area instead of the union."""
    if not detection_shapes or not object_shapes:
        return np.zeros((len(detection_shapes), len(object_shapes)))
    return np.asarray(mask_utils.iou(detection_shapes, object_shapes, crowd.astype(np.uint8).tolist()))


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


def _image_category(objects: _Instances | None, detections: _Instances | None) -> _ImageCategory:
    objects, detections = objects or _NOTHING, detections or _NOTHING
    # Best first, ties in input order; past the 100th a detection never counts: no IoU for it.
    best = np.argsort(-detections.scores, kind="mergesort")[: MAX_DETECTIONS[-1]]
    ious = _iou([detections.shapes[i] for i in best], objects.shapes, objects.crowd)
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
    precision = np.full((len(IOU_THRESHOLDS), len(RECALL_LEVELS), len(AREA_RANGES), len(MAX_DETECTIONS)), np.nan)
    recall = np.full((len(IOU_THRESHOLDS), len(AREA_RANGES), len(MAX_DETECTIONS)), np.nan)
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
            raise ValueError(f"iou_threshold must be one of {np.round(IOU_THRESHOLDS, 2).tolist()}, got {iou_threshold}")
        if (k, int(t[0])) not in self.curves:
            raise ValueError(f"category {category!r} has no ground-truth object: it has no curve")
        return self.curves[k, int(t[0])]


def _image_sizes(ground_truth: dict, iou_type: str) -> dict[int, tuple]:
    """``{image id: (height, width)}``; masks need the sizes (to draw polygons), boxes do not."""
    if not isinstance(ground_truth, dict) or not all(key in ground_truth for key in ("images", "annotations", "categories")):
        raise ValueError("ground_truth must be a COCO-format dict with 'images', 'annotations' and 'categories'")
    fields = ("id", "height", "width") if iou_type == "segm" else ("id",)
    _check_fields(ground_truth["images"], fields, "ground_truth['images']")
    return {image["id"]: (image.get("height"), image.get("width")) for image in ground_truth["images"]}


def _check_iou_type(iou_type: str) -> str:
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    return iou_type


def evaluate_detections(ground_truth: dict, results: list[dict], iou_type: str = "bbox") -> Evaluation:
    """Score COCO ``results`` against a COCO ``ground_truth``, as COCOeval does, and keep the curves.

    ``ground_truth``: a COCO-format dict (``images`` with ``id``, ``height``, ``width``;
    ``annotations`` with ``image_id``, ``category_id``, ``area``, ``bbox`` or ``segmentation``,
    optionally ``iscrowd``; ``categories`` with ``id``, ``name``). ``results``: COCO's results
    format, one dict per detection (``image_id``, ``category_id``, ``score``, and ``bbox``
    ``[x, y, w, h]`` or ``segmentation`` (RLE)). ``iou_type``: ``"bbox"`` or ``"segm"``.
    As in COCOeval, every image of the ground truth is scored, and annotations and results of
    categories not in ``categories`` are left out.
    """
    _check_iou_type(iou_type)
    sizes = _image_sizes(ground_truth, iou_type)
    objects = _objects(ground_truth, iou_type, sizes)
    detections = _detections(results, iou_type, sizes)
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    categories = [{"id": i, "name": names[i]} for i in sorted(names)]
    T, R, K, A, M = len(IOU_THRESHOLDS), len(RECALL_LEVELS), len(categories), len(AREA_RANGES), len(MAX_DETECTIONS)
    precision, recall = np.full((T, R, K, A, M), np.nan), np.full((T, K, A, M), np.nan)
    num_ground_truth, curves = np.zeros((K, A), dtype=int), {}
    for k, category in enumerate(categories):
        keys = [(i, category["id"]) for i in sorted(sizes)]
        pairs = [_image_category(objects.get(key), detections.get(key)) for key in keys if key in objects or key in detections]
        precision[:, :, k], recall[:, k], num_ground_truth[k], category_curves = _evaluate_category(pairs)
        curves.update({(k, t): curve for t, curve in enumerate(category_curves)})
    return Evaluation(iou_type, categories, precision, recall, num_ground_truth, curves)


def coco_stats(ground_truth: dict, results: list[dict], iou_type: str) -> list[float]:
    """The twelve numbers of ``COCOeval.stats`` (``SUMMARY_NAMES``, in that order), ``-1`` where
    COCOeval gives ``-1``, computed by ``evaluate_detections`` without COCOeval.

    ``results`` for ``"segm"`` are scored with each detection's area from its mask. (pycocotools'
    ``loadRes`` takes the area from the box when a result has one: to compare, give COCOeval the
    results without ``bbox``, as ``maskrcnn_edu.coco_eval`` does.)
    """
    return evaluate_detections(ground_truth, results, iou_type).stats()


# ---------------------------------------------------------------------------------------------
# Confusion matrix
# ---------------------------------------------------------------------------------------------


@dataclass
class ConfusionMatrix:
    """``counts [K + 1, K + 1]``; categories in ``class_names`` order, then one extra row and column.

    * ``counts[i, j]``, ``i, j < K``: objects of class ``i`` detected as class ``j`` (the diagonal:
      right), each object counted once, by the detection it was paired with.
    * ``counts[i, K]`` (column "missed"): objects of class ``i`` paired with no detection.
    * ``counts[K, j]`` (row "false positive"): detections of class ``j`` paired with no object:
      on the background, or a second detection of an object already paired.
    * ``counts[K, K]``: 0. Crowd regions are not objects; a detection on one is not counted.
    Each row ``i < K`` sums to the number of objects of class ``i``.
    """

    class_names: list[str]  # [K]
    counts: np.ndarray  # [K + 1, K + 1] int

    def table(self) -> str:
        """The matrix as text: rows the true class, columns what it was detected as."""
        rows = [*self.class_names, "false positive"]
        columns = [*self.class_names, "missed"]
        width = max(map(len, rows))
        cell = max(8, *(len(c) + 1 for c in columns))
        lines = [f"{'':<{width}}" + "".join(f"{c:>{cell}}" for c in columns)]
        lines += [f"{r:<{width}}" + "".join(f"{n:>{cell}}" for n in row) for r, row in zip(rows, self.counts.tolist())]
        return "\n".join(lines)


def _pair_by_overlap(ious: np.ndarray, iou_threshold: float) -> np.ndarray:
    """One-to-one pairs of detections and objects, best overlap first. ``ious [D, G]`` ->
    ``detection_of [G]``: the detection paired with each object, -1 for none."""
    detection_of = np.full(ious.shape[1], -1)
    detection_free = np.ones(ious.shape[0], dtype=bool)
    ds, gs = np.nonzero(ious >= iou_threshold)
    for order in np.argsort(-ious[ds, gs], kind="mergesort"):  # a handful of pairs an image
        d, g = ds[order], gs[order]
        if detection_free[d] and detection_of[g] < 0:
            detection_of[g], detection_free[d] = d, False
    return detection_of


def _confusion_of_image(objects: list[dict], detections: list[dict], shape_of, column: dict, iou_threshold: float):
    """One image's contribution: ``(true class, detected class)`` index pairs of its objects
    (``K`` for "missed") and the classes of its false positives."""
    things = [a for a in objects if not a.get("iscrowd", 0)]
    crowds = [a for a in objects if a.get("iscrowd", 0)]
    shapes = [shape_of(r) for r in detections]
    ious = _iou(shapes, [shape_of(a) for a in things], np.zeros(len(things), dtype=bool))  # [D, G]
    detection_of = _pair_by_overlap(ious, iou_threshold)  # [G]
    true_class = np.array([column[a["category_id"]] for a in things], dtype=int)  # [G]
    detected_class = np.array([column[r["category_id"]] for r in detections] + [len(column)], dtype=int)  # [D + 1]
    unpaired = np.setdiff1d(np.arange(len(detections)), detection_of)
    crowd_overlap = _iou(shapes, [shape_of(a) for a in crowds], np.ones(len(crowds), dtype=bool))  # [D, C]
    on_crowd = (crowd_overlap >= iou_threshold).any(axis=1) if crowds else np.zeros(len(detections), dtype=bool)
    # detection_of == -1 reads the class K appended last: "missed"
    return (true_class, detected_class[detection_of]), detected_class[unpaired[~on_crowd[unpaired]]]


def confusion_matrix(ground_truth: dict, results: list[dict], iou_type: str = "bbox",
                     iou_threshold: float = 0.5, score_threshold: float = 0.5) -> ConfusionMatrix:
    """Which class each ground-truth object was detected as, or that it was missed.

    In each image, the detections scored ``>= score_threshold`` (any class) and the objects (any
    class, crowds aside) are paired one to one, the pair of largest IoU first, as long as the IoU
    is ``>= iou_threshold``. An object's column is its detection's class, or "missed"; a detection
    left unpaired is a false positive, unless it overlaps a crowd region by ``iou_threshold`` (the
    crowd's IoU: the intersection over the detection's area). See ``ConfusionMatrix`` for the
    cells. Inputs as ``evaluate_detections``'; annotations and results of unknown categories are
    left out.
    """
    _check_iou_type(iou_type)
    sizes = _image_sizes(ground_truth, iou_type)
    shape_key = "bbox" if iou_type == "bbox" else "segmentation"
    _check_fields(ground_truth["annotations"], ("image_id", "category_id", shape_key), "ground_truth['annotations']")
    _check_fields(results, ("image_id", "category_id", "score", shape_key), "results")
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    column = {category_id: k for k, category_id in enumerate(sorted(names))}  # category id -> k
    objects, detections = defaultdict(list), defaultdict(list)
    for annotation in ground_truth["annotations"]:
        if annotation["category_id"] in column:
            objects[annotation["image_id"]].append(annotation)
    for result in results:
        if result["category_id"] in column and result["score"] >= score_threshold:
            detections[result["image_id"]].append(result)
    counts = np.zeros((len(column) + 1, len(column) + 1), dtype=int)
    for image_id, size in sizes.items():
        paired, false_positives = _confusion_of_image(
            objects[image_id], detections[image_id], lambda entry: _shape(entry, iou_type, size), column, iou_threshold
        )
        np.add.at(counts, paired, 1)
        np.add.at(counts, (len(column), false_positives), 1)
    return ConfusionMatrix([names[i] for i in sorted(names)], counts)
