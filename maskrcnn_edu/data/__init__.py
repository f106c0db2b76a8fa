"""Data: the synthetic Shapes set, COCO-format data, augmentation, and COCO export.

Every dataset returns ``(image, target)`` in torchvision's detection format (see
``validate.py``): ``image`` float ``[3, H, W]`` in 0..1, ``target`` with ``boxes [N, 4]``
(xyxy, the tight box of each mask), ``labels [N]`` int64, ``masks [N, H, W]`` uint8 and
``image_id``.

* ``shapes.py``: ``ShapesDataset``, squares, circles and triangles drawn on demand;
* ``coco.py``: ``CocoDataset``, COCO-format images and annotations through pycocotools;
* ``images.py``: ``read_image``, any image file (8 or 16 bits, EXIF-rotated) as float ``[3, H, W]``;
* ``export.py``: ``export_coco``, any dataset written as COCO data;
* ``transforms.py``: ``train_transforms`` and ``DetectionTransform`` on torchvision.transforms.v2,
  ``collate`` for batches of images of different sizes;
* ``validate.py``: ``check_sample`` for your own datasets, and ``tight_boxes``;
* ``crops.py``: a photograph and its instance masks cut into training and held-out crops (chapter 09);
"""
from .coco import CocoDataset, load_coco_json
from .export import export_coco
from .images import read_image
from .shapes import ShapesDataset
from .transforms import DetectionTransform, collate, to_tv_tensors, train_transforms
from .validate import check_sample, tight_boxes

__all__ = [
    "ShapesDataset",
    "CocoDataset",
    "load_coco_json",
    "read_image",
    "export_coco",
    "DetectionTransform",
    "train_transforms",
    "to_tv_tensors",
    "collate",
    "check_sample",
    "tight_boxes",
]
