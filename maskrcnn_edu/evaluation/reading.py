"""The two inputs of an evaluation, read: a COCO ground truth and a list of COCO results.

``evaluate_detections`` (``ap``) and ``confusion_matrix`` (``analyses``) take what COCOeval takes:
a COCO-format ground-truth dict (``images``, ``annotations``, ``categories``) and results, one
dict per detection. This module checks them (a missing field is named, not a bare ``KeyError``),
groups the annotations and the results by image and category, as COCOeval matches them, and
gives each entry what the matching needs: its shape (``matching.coco_shape``) and its area.

An object's area is its annotation's ``area`` field. A detection's area, which decides its size
range when it matches nothing, is the area of what is scored (its box for ``"bbox"``, its mask
for ``"segm"``), or, to read results as pycocotools' ``COCO.loadRes`` reads them, its box's
whenever the first result has a box (``loadres_sizes_by_box``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from .matching import coco_shape

IOU_TYPES = ("bbox", "segm")
DETECTION_AREAS = ("shape", "loadRes")  # how a detection is sized: see ap.evaluate_detections


@dataclass
class Instances:
    """The objects, or the detections, of one image and one category, in input order."""

    shapes: list  # what pycocotools' iou takes: [x, y, w, h] boxes or RLE masks
    areas: np.ndarray  # [N]
    crowd: np.ndarray  # [N] bool (detections: all False)
    scores: np.ndarray  # [N] (objects: zeros)


def check_fields(entries: list[dict], fields: tuple, what: str) -> None:
    """A ``ValueError`` naming the first of ``entries`` (called ``what``) that lacks one of ``fields``."""
    for index, entry in enumerate(entries):
        missing = [field for field in fields if field not in entry]
        if missing:
            raise ValueError(f"{what}[{index}] has no {missing} (it needs {list(fields)})")


def group_by_image_and_category(entries: list[dict], image_ids: set) -> dict[tuple, list[dict]]:
    """``{(image id, category id): entries}``, in input order; entries of other images left out."""
    groups = defaultdict(list)
    for entry in entries:
        if entry["image_id"] in image_ids:
            groups[entry["image_id"], entry["category_id"]].append(entry)
    return groups


def read_objects(ground_truth: dict, iou_type: str, sizes: dict) -> dict[tuple, Instances]:
    """The ground truth's annotations by image and category. Their area is the annotation's
    ``area`` field (for COCO, the area of the polygon or mask, whatever the IoU type)."""
    annotations = ground_truth["annotations"]
    shape_key = "bbox" if iou_type == "bbox" else "segmentation"
    check_fields(annotations, ("image_id", "category_id", "area", shape_key), "ground_truth['annotations']")
    return {
        key: Instances(
            shapes=[coco_shape(a, iou_type, sizes[key[0]]) for a in group],
            areas=np.array([a["area"] for a in group], dtype=float),
            crowd=np.array([bool(a.get("iscrowd", 0)) for a in group]),
            scores=np.zeros(len(group)),
        )
        for key, group in group_by_image_and_category(annotations, set(sizes)).items()
    }


def loadres_sizes_by_box(results: list[dict]) -> bool:
    """Whether pycocotools' ``COCO.loadRes`` sizes these results by their boxes.

    ``loadRes`` looks at the first result only: if it has a non-empty ``"bbox"``, every result's
    ``area`` becomes its box's ``w * h``, masks or not (that branch comes before the
    ``"segmentation"`` one, and detectron2, for one, writes segm results with their boxes);
    otherwise (masks only) each area is its mask's."""
    if not results or len(results[0].get("bbox", [])) == 0:
        return False
    missing = [index for index, result in enumerate(results) if "bbox" not in result]
    if missing:
        raise ValueError(f"results[{missing[0]}] has no 'bbox' but results[0] has one: COCO.loadRes would "
                         "take every area from the box, and fail")
    return True


def read_detections(results: list[dict], iou_type: str, sizes: dict,
                    detection_area: str = "shape") -> dict[tuple, Instances]:
    """The results by image and category. A detection's area is its box's for ``"bbox"``, its
    mask's for ``"segm"``; with ``detection_area="loadRes"``, as ``loadres_sizes_by_box`` says."""
    shape_key = "bbox" if iou_type == "bbox" else "segmentation"
    check_fields(results, ("image_id", "category_id", "score", shape_key), "results")
    unknown = sorted({r["image_id"] for r in results} - set(sizes))
    if unknown:
        raise ValueError(f"results name image ids {unknown[:10]} that are not in ground_truth['images']")
    by_box = iou_type == "bbox" or (detection_area == "loadRes" and loadres_sizes_by_box(results))
    groups = {}
    for key, group in group_by_image_and_category(results, set(sizes)).items():
        shapes = [coco_shape(r, iou_type, sizes[key[0]]) for r in group]
        areas = [r["bbox"][2] * r["bbox"][3] for r in group] if by_box else mask_utils.area(shapes)
        groups[key] = Instances(shapes, np.asarray(areas, dtype=float), np.zeros(len(group), dtype=bool),
                                np.array([r["score"] for r in group], dtype=float))
    return groups


NOTHING = Instances([], np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0))


def image_sizes(ground_truth: dict, iou_type: str) -> dict[int, tuple]:
    """``{image id: (height, width)}``; masks need the sizes (to draw polygons), boxes do not."""
    keys = ("images", "annotations", "categories")
    if not isinstance(ground_truth, dict) or not all(key in ground_truth for key in keys):
        raise ValueError(f"ground_truth must be a COCO-format dict with {', '.join(map(repr, keys))}")
    fields = ("id", "height", "width") if iou_type == "segm" else ("id",)
    check_fields(ground_truth["images"], fields, "ground_truth['images']")
    return {image["id"]: (image.get("height"), image.get("width")) for image in ground_truth["images"]}


def check_iou_type(iou_type: str) -> str:
    """``iou_type`` itself if it is one of ``IOU_TYPES``, else a ``ValueError``."""
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    return iou_type

