"""Write any dataset as COCO-format data: PNG images and one annotation JSON with RLE masks.

``export_coco(ShapesDataset(20), "shapes")`` gives ``shapes/images/000000.png ...`` and
``shapes/annotations.json``, which ``CocoDataset``, pycocotools and other COCO tools read. Every
sample is checked first (``check_sample``), so a user's own dataset with, say, more masks than
boxes fails with its index and image id instead of writing a broken file.

Each file is written to a temporary name in its folder and renamed into place (``os.replace``
is atomic), and the JSON last: an interrupted export never leaves a half-written file, and an
``annotations.json`` only ever names images that are complete.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

from .validate import check_sample
from ..files import atomic_write

__all__ = ["export_coco", "exported_files", "remove_export"]


def encode_masks(masks: torch.Tensor) -> list[dict]:
    """``masks [N, H, W]`` uint8 -> N compressed RLEs, ``counts`` as str so that JSON can hold them.

    pycocotools runs along columns, so it wants a column-major (Fortran-order) ``[H, W, N]`` array.
    """
    array = np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8))
    rles = mask_utils.encode(array)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def annotations_of(target: dict, image_id: int, first_id: int) -> list[dict]:
    """COCO annotation dicts for one image's instances, ids ``first_id, first_id + 1, ...``.

    ``bbox`` is ``[x, y, w, h]`` of the mask (``toBbox``), ``area`` its pixel count.
    """
    masks = target["masks"]
    if len(masks) == 0:
        return []
    rles = encode_masks(masks)
    bboxes = mask_utils.toBbox(rles).tolist()  # [N, 4]
    areas = mask_utils.area(rles).tolist()  # [N]
    return [
        {
            "id": first_id + k,
            "image_id": image_id,
            "category_id": int(label),
            "segmentation": rle,
            "bbox": bbox,
            "area": int(area),
            "iscrowd": 0,
        }
        for k, (rle, bbox, area, label) in enumerate(zip(rles, bboxes, areas, target["labels"].tolist()))
    ]


def _save_png(image: torch.Tensor, path: str) -> None:
    """``image [3, H, W]`` float in 0..1 -> an 8-bit RGB PNG at ``path``."""
    pixels = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # [H, W, 3]
    atomic_write(path, lambda file: Image.fromarray(pixels).save(file, format="PNG"))


def _checked_image_id(image: torch.Tensor, target: dict, index: int, seen: dict, class_names) -> int:
    """The image id of the sample at ``index``, once the sample is checked: its format
    (``check_sample``), an id that no earlier sample has (``seen``: id -> index, updated here) and
    a name in ``class_names`` for every label."""
    image_id = int(target.get("image_id", index)) if isinstance(target, dict) else index
    where = f"dataset index {index} (image id {image_id})"
    check_sample(image, target, where)
    if image_id in seen:
        raise ValueError(f"{where}: image id {image_id} is used by dataset index {seen[image_id]} too")
    labels, num_classes = target["labels"], len(class_names) - 1
    if len(labels) and labels.max() > num_classes:
        raise ValueError(f"{where}: label {labels.max().item()} has no name in class_names {class_names}")
    seen[image_id] = index
    return image_id


def export_coco(dataset, out_dir, class_names=None, progress: bool = True) -> str:
    """Write ``dataset`` as COCO data under ``out_dir``; return the annotation file's path.

    ``out_dir/images/<image id, 6 digits>.png`` and ``out_dir/annotations.json``, with category
    ids 1..K named by ``class_names[1:]`` (default ``dataset.class_names``), so that label ``k``
    is category id ``k``. An image's id is its ``target["image_id"]``, or its index if the target
    has none. Images are stored as 8-bit PNG: a float image in 0..1 is rounded to 1/255 steps.
    """
    class_names = class_names if class_names is not None else getattr(dataset, "class_names", None)
    if class_names is None:
        raise ValueError("export_coco: the dataset has no class_names; pass class_names=['background', ...]")
    image_dir = os.path.join(os.fspath(out_dir), "images")
    os.makedirs(image_dir, exist_ok=True)

    images, annotations, seen = [], [], {}
    for index in tqdm(range(len(dataset)), desc="export", unit="image", disable=not progress):
        image, target = dataset[index]
        image_id = _checked_image_id(image, target, index, seen, class_names)
        file_name = f"{image_id:06d}.png"
        _save_png(image, os.path.join(image_dir, file_name))
        height, width = image.shape[1:]
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        annotations += annotations_of(target, image_id, first_id=len(annotations) + 1)

    coco = {
        "info": {"description": f"exported by maskrcnn-edu from {type(dataset).__name__}"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k, "name": name} for k, name in enumerate(class_names[1:], start=1)],
    }
    path = os.path.join(os.fspath(out_dir), "annotations.json")
    atomic_write(path, lambda file: json.dump(coco, file), mode="w")
    return path


def exported_files(out_dir) -> list[str]:
    """What of an earlier export ``out_dir`` holds: ``"annotations.json"`` and ``"images/ (N files)"``
    where they are there (an empty ``images/`` does not count); ``[]`` for a fresh folder."""
    out_dir = os.fspath(out_dir)
    found = ["annotations.json"] if os.path.exists(os.path.join(out_dir, "annotations.json")) else []
    image_dir = os.path.join(out_dir, "images")
    if os.path.isdir(image_dir) and os.listdir(image_dir):
        found.append(f"images/ ({len(os.listdir(image_dir))} files)")
    return found


def remove_export(out_dir) -> None:
    """Remove an earlier export from ``out_dir``: ``annotations.json`` first (so that an interrupted
    removal never leaves one naming missing images), then ``images/``. Other files stay."""
    path = os.path.join(os.fspath(out_dir), "annotations.json")
    if os.path.exists(path):
        os.remove(path)
    shutil.rmtree(os.path.join(os.fspath(out_dir), "images"), ignore_errors=True)
