"""Which detection found which object, on one image: the matching every drawing, explorer and benchmark uses.

Two steps. First the overlaps, as a matrix ``ious [G, D]`` (objects by detections): of boxes
(``box_ious``), of binary masks (``mask_ious``), or of COCO annotations and results, boxes or RLE
masks, by pycocotools as COCOeval computes them (``coco_ious``, detections by objects). Then
``match_by_iou`` pairs them one to one, greedily: candidate pairs (IoU ``>= iou_threshold``, and
by default of the same class) are taken in order of priority, each when neither its object nor
its detection is taken yet. Two priorities:

* ``first="score"``: the detections best score first, each taking the free object it overlaps
  most. A detection with a high score cannot lose its object to a better-placed but weaker one:
  the rule of COCO's AP at one IoU threshold (COCO's crowds, size ranges and ten thresholds are
  ``ap.match_detections``'s), and of chapter 08's and 08's pictures and the benchmarks' counts.
* ``first="overlap"``: the pair of largest IoU first, whatever the scores: the confusion
  matrix's rule (``analyses.confusion_matrix``), which pairs objects with detections of any
  class, so that a detection's class does not steer what it is paired with.

The result, ``Matches``, lists the pairs, the objects no detection took (``missed``) and the
detections that took no object (``false_positives``). ``match_boxes`` and ``match_masks`` are the
two steps in one call. The pass is a loop over candidate pairs (a handful per image), because
each pair taken removes an object and a detection from those that follow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..boxes import box_iou

__all__ = ["Matches", "match_by_iou", "match_boxes", "match_masks", "box_ious", "mask_ious", "coco_shape",
           "coco_ious"]


def _numpy(values) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like -> a NumPy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


# ---------------------------------------------------------------------------------------------
# Overlaps
# ---------------------------------------------------------------------------------------------


def box_ious(boxes_a, boxes_b) -> np.ndarray:
    """IoU of every pair of boxes: ``[A, 4]`` x ``[B, 4]`` ``(x0, y0, x1, y1)`` -> ``[A, B]`` float64.

    Tensors or arrays; ``maskrcnn_edu.boxes.box_iou`` in float64, so that an IoU of exactly a
    threshold stays exact."""
    a = torch.as_tensor(_numpy(boxes_a), dtype=torch.float64).reshape(-1, 4)
    b = torch.as_tensor(_numpy(boxes_b), dtype=torch.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return box_iou(a, b).numpy()


def mask_ious(masks_a, masks_b) -> np.ndarray:
    """IoU of every pair of binary masks: ``[A, H, W]`` x ``[B, H, W]`` -> ``[A, B]`` float64 (0
    where both masks are empty). The intersections of all pairs are one matrix product."""
    masks_a, masks_b = _numpy(masks_a), _numpy(masks_b)
    pixels = int(np.prod(masks_a.shape[1:]))
    a = masks_a.reshape(len(masks_a), pixels).astype(np.float64)  # [A, HW]
    b = masks_b.reshape(len(masks_b), pixels).astype(np.float64)  # [B, HW]
    intersection = a @ b.T  # [A, B]
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _as_rle(segmentation, height: int, width: int) -> dict:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE."""
    if isinstance(segmentation, list):  # polygons, possibly several parts: one mask
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):  # uncompressed RLE (COCO's crowds)
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def coco_shape(entry: dict, iou_type: str, size: tuple[int, int]):
    """What pycocotools' ``mask.iou`` compares, of a COCO annotation or result: its ``bbox``
    ``[x, y, w, h]`` for ``"bbox"``, its ``segmentation`` as a compressed RLE for ``"segm"``
    (``size``: the image's ``(height, width)``, to draw polygons)."""
    return list(map(float, entry["bbox"])) if iou_type == "bbox" else _as_rle(entry["segmentation"], *size)


def coco_ious(detection_shapes: list, object_shapes: list, crowd) -> np.ndarray:
    """``[D, G]`` IoU of each detection with each object (``coco_shape``s; detections by objects,
    pycocotools' order: transpose for ``match_by_iou``), by pycocotools: COCOeval's very numbers.
    Where ``crowd [G]`` is true, the intersection is divided by the detection's area, not the union."""
    if not detection_shapes or not object_shapes:
        return np.zeros((len(detection_shapes), len(object_shapes)))
    crowd = np.asarray(crowd, dtype=bool).astype(np.uint8).tolist()
    return np.asarray(mask_utils.iou(detection_shapes, object_shapes, crowd))


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matches:
    """Objects matched one to one to detections on one image (``match_by_iou``).

    ``pairs [M, 2]``: ``(object, detection)`` indices of each match, in the order they were made
    (``first="score"``: best detection first); ``ious [M]``: their IoUs; ``missed [G - M]``:
    the objects no detection took, ``false_positives [D - M]``: the detections that took no
    object, both ascending.
    """

    pairs: np.ndarray
    ious: np.ndarray
    missed: np.ndarray
    false_positives: np.ndarray

    @property
    def detection_of(self) -> np.ndarray:
        """``[G]``: the detection each object was matched to, ``-1`` for a missed one."""
        detection_of = np.full(len(self.pairs) + len(self.missed), -1)
        detection_of[self.pairs[:, 0]] = self.pairs[:, 1]
        return detection_of


def _check(ious: np.ndarray, gt_labels, pred_labels, pred_scores, same_class: bool, first: str) -> None:
    """Every input is there and of the right length, or a ``ValueError`` says which is not."""
    if first not in ("score", "overlap"):
        raise ValueError(f'first must be "score" or "overlap", got {first!r}')
    if first == "score" and pred_scores is None:
        raise ValueError('first="score" needs pred_scores')
    if same_class and (gt_labels is None or pred_labels is None):
        raise ValueError("same_class=True needs gt_labels and pred_labels")
    num_objects, num_detections = ious.shape
    if gt_labels is not None and len(gt_labels) != num_objects:
        raise ValueError(f"gt_labels has {len(gt_labels)} entries for {num_objects} objects (rows of ious)")
    for name, values in (("pred_labels", pred_labels), ("pred_scores", pred_scores)):
        if values is not None and len(values) != num_detections:
            raise ValueError(f"{name} has {len(values)} entries for {num_detections} detections "
                             "(columns of ious)")


def _priority(ious: np.ndarray, objects: np.ndarray, detections: np.ndarray, pred_scores,
              first: str) -> np.ndarray:
    """The order in which the candidate pairs ``(objects[i], detections[i])`` are offered.

    ``"score"``: by the detection's rank (best score first, ties in index order), then by IoU,
    largest first, then by object index. ``"overlap"``: by IoU, then by detection, then by object.
    (``np.lexsort`` sorts by its last key first.)"""
    overlap = ious[objects, detections]
    if first == "overlap":
        return np.lexsort((objects, detections, -overlap))
    rank = np.empty(ious.shape[1], dtype=int)
    rank[np.argsort(-pred_scores, kind="stable")] = np.arange(ious.shape[1])
    return np.lexsort((objects, -overlap, rank[detections]))


def match_by_iou(ious, gt_labels=None, pred_labels=None, pred_scores=None, iou_threshold: float = 0.5,
                 same_class: bool = True, first: str = "score") -> Matches:
    """Match detections to objects one to one by ``ious [G, D]`` (objects by detections).

    A candidate pair has an IoU ``>= iou_threshold`` and, if ``same_class``, equal labels
    (``gt_labels [G]``, ``pred_labels [D]``). Candidates are offered in order of priority, and a
    pair is taken when neither its object nor its detection is taken yet. ``first="score"``
    (``pred_scores [D]`` needed): detections best score first (ties: the lower index), each taking
    the free object it overlaps most (ties: the lower index). ``first="overlap"``: the largest IoU
    first (ties: the lower detection index, then object index). Unmatched objects are missed,
    unmatched detections false positives.
    """
    ious = np.asarray(ious, dtype=np.float64)
    gt_labels, pred_labels, pred_scores = (None if v is None else _numpy(v).reshape(-1)
                                           for v in (gt_labels, pred_labels, pred_scores))
    _check(ious, gt_labels, pred_labels, pred_scores, same_class, first)
    candidate = ious >= iou_threshold  # [G, D]
    if same_class:
        candidate &= gt_labels[:, None] == pred_labels[None, :]
    objects, detections = np.nonzero(candidate)  # the candidate pairs
    object_free, detection_free = np.ones(ious.shape[0], bool), np.ones(ious.shape[1], bool)
    pairs = []
    for k in _priority(ious, objects, detections, pred_scores, first):
        g, d = objects[k], detections[k]
        if object_free[g] and detection_free[d]:
            object_free[g], detection_free[d] = False, False
            pairs.append((g, d))
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    missed, false_positives = np.flatnonzero(object_free), np.flatnonzero(detection_free)
    return Matches(pairs, ious[pairs[:, 0], pairs[:, 1]], missed, false_positives)


def match_boxes(gt_boxes, gt_labels, boxes, labels, scores, iou_threshold: float = 0.5) -> Matches:
    """``match_by_iou`` of one image's detections (``boxes [D, 4]``, ``labels [D]``, ``scores [D]``)
    to its objects (``gt_boxes [G, 4]``, ``gt_labels [G]``) by box IoU: best score first, same class."""
    return match_by_iou(box_ious(gt_boxes, boxes), gt_labels, labels, scores, iou_threshold)


def match_masks(gt_masks, gt_labels, masks, labels, scores, iou_threshold: float = 0.5) -> Matches:
    """``match_by_iou`` of one image's detections (``masks [D, H, W]`` bool, ``labels [D]``,
    ``scores [D]``) to its objects (``gt_masks [G, H, W]``, ``gt_labels [G]``) by mask IoU: best
    score first, same class."""
    return match_by_iou(mask_ious(gt_masks, masks), gt_labels, labels, scores, iou_threshold)
