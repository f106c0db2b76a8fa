"""COCO-format data: MS COCO itself, or your own set exported from any annotation tool.

One constructor call turns a folder of images and a COCO annotation JSON into training data::

    dataset = CocoDataset("my_data/images", "my_data/annotations.json")
    image, target = dataset[0]

What the annotation file may hold, and what becomes of it:

* Segmentations as polygons (one or several parts), compressed RLE (``counts`` a string) or
  uncompressed RLE (``counts`` a list of run lengths); pycocotools decodes all three.
* COCO category ids, which need not be contiguous (COCO's run 1..90 with gaps), become labels
  1..K in increasing id order; ``class_names``, ``category_id_to_label`` and
  ``label_to_category_id`` say which is which. ``categories`` keeps a subset, by name or id;
  annotations of other categories are ignored.
* Crowd annotations (``iscrowd: 1``, a region of many objects) are not instances to learn, so
  they are left out of ``target``; evaluation needs them (a detection on a crowd is not a false
  positive) and gets them from ``crowd_target(index)`` or from ``dataset.coco``.
* Images without annotations (left) are kept as negative examples, or dropped with
  ``keep_empty=False``.
* Grayscale, RGBA, palette and CMYK images are converted to RGB (alpha is dropped); 16-bit images
  are scaled by their bit depth; EXIF orientation is applied, so annotations are in the frame a
  viewer shows (``images.read_image``).

The file is checked when the dataset is built, so a broken file fails at once, naming the file
and the entry; a missing or unreadable image fails when it is read, naming the file and image id.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from typing import Iterable

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from .transforms import as_detection_transform
from .images import read_image
from .validate import tight_boxes

__all__ = ["CocoDataset", "load_coco_json"]

REQUIRED_KEYS = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("id", "image_id", "category_id", "segmentation"),
    "categories": ("id", "name"),
}


# ---------------------------------------------------------------------------------------------
# Reading and checking the annotation file
# ---------------------------------------------------------------------------------------------


def _fail(path, problem: str):
    raise ValueError(f"{path}: {problem}")


def _check_entries(path, data: dict) -> None:
    """Each list holds dicts with the keys we read; ids are unique."""
    for section, keys in REQUIRED_KEYS.items():
        entries = data[section]
        if not isinstance(entries, list):
            _fail(path, f"'{section}' must be a list, got {type(entries).__name__}")
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                _fail(path, f"{section}[{position}] must be an object, got {type(entry).__name__}")
            missing = [key for key in keys if key not in entry]
            if missing:
                _fail(path, f"{section}[{position}] (id {entry.get('id')!r}) lacks {', '.join(missing)}")
        ids = [entry["id"] for entry in entries]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            _fail(path, f"{section} id {duplicate!r} appears more than once")


def _check_references(path, data: dict) -> None:
    """Every annotation names a known image and category, and an RLE has its image's size."""
    images = {image["id"]: image for image in data["images"]}
    category_ids = {category["id"] for category in data["categories"]}
    for ann in data["annotations"]:
        if ann["image_id"] not in images:
            _fail(
                path,
                f"annotation {ann['id']!r} names image id {ann['image_id']!r}, which is not in 'images'",
            )
        if ann["category_id"] not in category_ids:
            _fail(
                path,
                f"annotation {ann['id']!r} names category id {ann['category_id']!r}, which is not in "
                f"'categories' (ids {sorted(category_ids)})",
            )
        segmentation, image = ann["segmentation"], images[ann["image_id"]]
        if isinstance(segmentation, dict) and (
            list(segmentation.get("size", [])) != [image["height"], image["width"]]
        ):
            _fail(
                path,
                f"annotation {ann['id']!r}: RLE size {segmentation.get('size')!r} is not its image's "
                f"[height, width] {[image['height'], image['width']]}",
            )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_bbox(path, ann: dict) -> None:
    """``bbox``, when given, is ``[x, y, width, height]``, finite, width and height not negative."""
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
        _fail(path, f"annotation {ann['id']!r}: bbox must be 4 numbers [x, y, width, height], got {bbox!r}")
    if not all(map(math.isfinite, bbox)) or bbox[2] < 0 or bbox[3] < 0:
        _fail(path, f"annotation {ann['id']!r}: bbox {bbox!r} has a negative width or height (or a NaN)")


def _check_polygons(path, ann: dict) -> None:
    """A polygon segmentation is a non-empty list of polygons, each 3 or more ``x, y`` pairs.

    pycocotools reads a list of 4 numbers as a box and fails on fewer without saying where.
    """
    polygons = ann["segmentation"]
    if not polygons:
        _fail(path, f"annotation {ann['id']!r}: the segmentation is empty (no polygon, no RLE)")
    for k, polygon in enumerate(polygons):
        if not isinstance(polygon, list) or not all(map(_is_number, polygon)):
            _fail(path, f"annotation {ann['id']!r}: polygon {k} must be a list of numbers, got {polygon!r}")
        if len(polygon) < 6 or len(polygon) % 2:
            _fail(
                path,
                f"annotation {ann['id']!r}: polygon {k} has {len(polygon)} numbers; a polygon is x, y pairs, "
                "at least 6 numbers (3 points)",
            )


def _check_geometry(path, data: dict) -> None:
    """Each annotation's ``bbox`` (``_check_bbox``) and segmentation: polygons (``_check_polygons``)
    or an RLE dict."""
    for ann in data["annotations"]:
        if "bbox" in ann:
            _check_bbox(path, ann)
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):
            _check_polygons(path, ann)
        elif not isinstance(segmentation, dict):
            _fail(
                path,
                f"annotation {ann['id']!r}: segmentation must be a list of polygons or an RLE dict, "
                f"got a {type(segmentation).__name__}",
            )


def load_coco_json(path) -> COCO:
    """Read and check a COCO annotation file -> ``pycocotools.coco.COCO`` with its index built.

    Raises ``ValueError`` naming ``path`` if the file is not JSON, lacks ``images``,
    ``annotations`` or ``categories``, has an entry without the keys we read, a duplicate id, an
    annotation whose ``image_id`` or ``category_id`` is unknown, an RLE of the wrong size, a
    ``bbox`` of negative width or height, an empty segmentation or a polygon of fewer than three
    points; the error names the annotation id.
    """
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a COCO annotation file: it is not JSON ({err})") from err
    if not isinstance(data, dict):
        _fail(path, f"not a COCO annotation file: the JSON is a {type(data).__name__}, not an object")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        _fail(path, f"not a COCO annotation file: it lacks {', '.join(repr(k) for k in missing)}")
    _check_entries(path, data)
    _check_references(path, data)
    _check_geometry(path, data)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------


class CocoDataset(Dataset):
    """Images of ``image_dir`` with the instances of the COCO file ``annotation_file``.

    ``dataset[i]`` -> ``(image, target)``: ``image`` float ``[3, H, W]`` in 0..1; ``target`` with
    ``boxes [N, 4]`` float32 (xyxy: the tight box of each mask), ``labels [N]`` int64 in 1..K,
    ``masks [N, H, W]`` uint8, ``image_id`` (the COCO image id, an ``int``). Crowd annotations
    are not in ``target``: see ``crowd_target``. Images are in increasing image-id order.

    Options:
        categories: keep only these categories, given by name or COCO id (``None``: all).
            Labels follow increasing category id whatever order they are given in.
        keep_empty: keep images with no (non-crowd, kept-category) annotation, as negatives.
        transforms: applied to ``(image, target)``; a ``torchvision.transforms.v2`` transform is
            wrapped with ``DetectionTransform``.

    Attributes: ``coco`` (the pycocotools ``COCO`` object, as evaluation wants it),
    ``image_ids``, ``class_names`` (``["background", *names]`` in label order),
    ``category_id_to_label``, ``label_to_category_id``.

    An annotation whose mask covers no pixel centre (a degenerate polygon) has no box either; it
    is left out of ``target``.
    """

    def __init__(
        self,
        image_dir,
        annotation_file,
        categories: Iterable[int | str] | None = None,
        keep_empty: bool = True,
        transforms=None,
    ):
        self.image_dir = os.fspath(image_dir)
        self.annotation_file = os.fspath(annotation_file)
        self.coco = load_coco_json(self.annotation_file)
        self.transforms = as_detection_transform(transforms)

        category_ids = self._select_categories(categories)
        self.label_to_category_id = {label: cat_id for label, cat_id in enumerate(category_ids, start=1)}
        self.category_id_to_label = {cat_id: label for label, cat_id in self.label_to_category_id.items()}
        self.class_names = ["background"] + [self.coco.cats[cat_id]["name"] for cat_id in category_ids]

        self.image_ids = [
            image_id for image_id in sorted(self.coco.imgs)
            if keep_empty or self._annotations(image_id, crowd=False)
        ]

    def _select_categories(self, categories) -> list[int]:
        """The kept COCO category ids, increasing."""
        all_ids = sorted(self.coco.cats)
        if categories is None:
            return all_ids
        if isinstance(categories, (str, int)):
            categories = [categories]
        by_name = {category["name"]: category["id"] for category in self.coco.cats.values()}
        chosen = set()
        for category in categories:
            if isinstance(category, str) and category in by_name:
                chosen.add(by_name[category])
            elif isinstance(category, int) and category in self.coco.cats:
                chosen.add(category)
            else:
                raise ValueError(
                    f"{self.annotation_file}: unknown category {category!r}; the file has "
                    f"{', '.join(f'{name!r} (id {cat_id})' for name, cat_id in by_name.items())}"
                )
        return sorted(chosen)

    def _annotations(self, image_id: int, crowd: bool) -> list[dict]:
        """The image's annotations of kept categories, crowd ones or the others, in file order."""
        return [
            ann
            for ann in self.coco.imgToAnns.get(image_id, [])
            if bool(ann.get("iscrowd", 0)) == crowd and ann["category_id"] in self.category_id_to_label
        ]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        return (
            f"CocoDataset({self.image_dir!r}, {self.annotation_file!r}: {len(self)} images, "
            f"{len(self.class_names) - 1} categories)"
        )

    def load_image(self, image_id: int) -> torch.Tensor:
        """The image of ``image_id`` -> float ``[3, H, W]`` in 0..1 (``images.read_image``: RGB,
        16-bit scaled by its bit depth, EXIF orientation applied).

        Raises ``FileNotFoundError`` or ``ValueError`` naming the file and the image id.
        """
        info = self.coco.imgs[image_id]
        path = os.path.join(self.image_dir, info["file_name"])
        image = read_image(path, label=f"image id {image_id}")
        if tuple(image.shape[1:]) != (info["height"], info["width"]):
            raise ValueError(
                f"image file {path} (image id {image_id}) is {image.shape[1]} x {image.shape[2]} pixels "
                f"but {self.annotation_file} says {info['height']} x {info['width']}"
            )
        return image

    def _instances(self, image_id: int, crowd: bool) -> dict:
        """``boxes``, ``labels``, ``masks`` of the image's annotations (crowd or not)."""
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        anns = self._annotations(image_id, crowd)
        if anns:
            # annToRLE turns polygons and uncompressed RLE into compressed RLE; one decode call
            # then gives all masks at once, [H, W, N] in column-major order.
            rles = [self.coco.annToRLE(ann) for ann in anns]
            masks = torch.from_numpy(np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1)))
        else:
            masks = torch.zeros((0, height, width), dtype=torch.uint8)
        labels = torch.tensor([self.category_id_to_label[ann["category_id"]] for ann in anns],
                              dtype=torch.int64)
        non_empty = (masks.flatten(1) != 0).any(dim=1)  # [N]: a degenerate polygon covers nothing
        masks, labels = masks[non_empty], labels[non_empty]
        return {"boxes": tight_boxes(masks), "labels": labels, "masks": masks}

    def __getitem__(self, index: int):
        image_id = self.image_ids[index]
        image = self.load_image(image_id)
        target = {**self._instances(image_id, crowd=False), "image_id": image_id}
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def crowd_target(self, index: int) -> dict:
        """The crowd regions of image ``index``, for evaluation: ``boxes [M, 4]``, ``labels [M]``,
        ``masks [M, H, W]`` (as in ``target``, in the image's original coordinates: no
        transforms), ``image_id``."""
        image_id = self.image_ids[index]
        return {**self._instances(image_id, crowd=True), "image_id": image_id}
