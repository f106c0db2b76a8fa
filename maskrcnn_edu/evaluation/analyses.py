"""What the AP does not say: which class each object was detected as, or that it was missed.

``ap`` computes COCO's numbers and keeps the curves behind them (``Evaluation.curve``,
``Evaluation.per_class``); the analyses here read the same inputs another way. The *confusion
matrix* pairs each image's confident detections with its objects whatever their classes
(``matching.match_by_iou`` with ``same_class=False``, the largest overlap first), and counts
each object under the class of the detection it was paired with, or as missed; the detections
left over are false positives. A detector that finds a shape but calls it by the wrong class
shows off the diagonal, one that misses it in the last column.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import numpy as np

from .reading import check_fields, check_iou_type, image_sizes
from .matching import coco_ious, coco_shape, match_by_iou

__all__ = ["ConfusionMatrix", "confusion_matrix"]


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
        lines += [f"{r:<{width}}" + "".join(f"{n:>{cell}}" for n in row)
                  for r, row in zip(rows, self.counts.tolist())]
        return "\n".join(lines)


def _confusion_of_image(objects: list[dict], detections: list[dict], shape_of, column: dict,
                        iou_threshold: float) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """One image's contribution: ``(true class [G], detected class [G])``, the index pairs of its
    objects (``K`` for "missed"), and ``[F]`` the classes of its false positives. ``shape_of``:
    an annotation or result -> what ``coco_ious`` compares; ``column``: category id -> index."""
    things = [a for a in objects if not a.get("iscrowd", 0)]
    crowds = [a for a in objects if a.get("iscrowd", 0)]
    shapes = [shape_of(r) for r in detections]
    ious = coco_ious(shapes, [shape_of(a) for a in things], np.zeros(len(things), dtype=bool))  # [D, G]
    # Any class with any class, the largest overlap first: a detection's class must not steer its pair.
    matches = match_by_iou(ious.T, iou_threshold=iou_threshold, same_class=False, first="overlap")
    detection_of, unpaired = matches.detection_of, matches.false_positives  # [G], [U]
    true_class = np.array([column[a["category_id"]] for a in things], dtype=int)  # [G]
    detected_class = np.array([column[r["category_id"]] for r in detections] + [len(column)])  # [D + 1]
    crowd_overlap = coco_ious(shapes, [shape_of(a) for a in crowds], np.ones(len(crowds), bool))  # [D, C]
    on_crowd = (crowd_overlap >= iou_threshold).any(axis=1)  # [D]; no crowd: all False
    # detection_of == -1 reads the class K appended last: "missed"
    return (true_class, detected_class[detection_of]), detected_class[unpaired[~on_crowd[unpaired]]]


def _by_image(entries) -> defaultdict:
    """``{image id: [entries]}``, in input order (``[]`` for an image with none)."""
    groups = defaultdict(list)
    for entry in entries:
        groups[entry["image_id"]].append(entry)
    return groups


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
    check_iou_type(iou_type)
    sizes = image_sizes(ground_truth, iou_type)
    shape_key = "bbox" if iou_type == "bbox" else "segmentation"
    check_fields(ground_truth["annotations"], ("image_id", "category_id", shape_key),
                 "ground_truth['annotations']")
    check_fields(results, ("image_id", "category_id", "score", shape_key), "results")
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    column = {category_id: k for k, category_id in enumerate(sorted(names))}  # category id -> k
    objects = _by_image(a for a in ground_truth["annotations"] if a["category_id"] in column)
    detections = _by_image(r for r in results if r["category_id"] in column and r["score"] >= score_threshold)
    counts = np.zeros((len(column) + 1, len(column) + 1), dtype=int)
    for image_id, size in sizes.items():
        shape_of = partial(coco_shape, iou_type=iou_type, size=size)
        paired, false_positives = _confusion_of_image(objects[image_id], detections[image_id], shape_of,
                                                      column, iou_threshold)
        np.add.at(counts, paired, 1)
        np.add.at(counts, (len(column), false_positives), 1)
    return ConfusionMatrix([names[i] for i in sorted(names)], counts)
