"""Augmentation with ``torchvision.transforms.v2``, and batching images of different sizes.

A v2 transform moves boxes and masks with the image only when it can tell them apart from other
tensors: boxes must be ``tv_tensors.BoundingBoxes`` (which know their format and canvas size)
and masks ``tv_tensors.Mask``. A plain tensor of boxes would pass through a flip unchanged,
silently. ``DetectionTransform`` therefore wraps our plain-tensor sample into tv_tensors, runs
the v2 transform, and returns plain tensors again (``v2.ToPureTensor``), so datasets and models
only ever see the plain format of ``validate.py``.

Randomness: v2 transforms draw from torch's global generator. ``torch.manual_seed`` makes a run
reproducible, including DataLoader workers, which torch seeds from it.
"""
from __future__ import annotations

from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from .validate import tight_boxes

__all__ = ["DetectionTransform", "train_transforms", "to_tv_tensors", "collate", "as_detection_transform"]


def to_tv_tensors(image: Tensor, target: dict) -> tuple[tv_tensors.Image, dict]:
    """Wrap a plain sample so v2 transforms know what each tensor is. Other keys pass as they are.

    ``image [3, H, W]`` -> ``tv_tensors.Image``; ``boxes [N, 4]`` -> ``tv_tensors.BoundingBoxes``
    (XYXY on an ``(H, W)`` canvas); ``masks [N, H, W]`` -> ``tv_tensors.Mask``.
    """
    wrapped = dict(target)
    wrapped["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY",
                                                canvas_size=tuple(image.shape[-2:]))
    wrapped["masks"] = tv_tensors.Mask(target["masks"])
    return tv_tensors.Image(image), wrapped


class DetectionTransform:
    """Apply a ``torchvision.transforms.v2`` transform to a plain ``(image, target)`` sample.

    ``DetectionTransform(v2.RandomHorizontalFlip())(image, target)`` -> ``(image, target)`` in
    the plain format, with boxes and masks moved with the image. Then two clean-ups that v2 does
    not do, because it never looks at boxes and masks together:

    * Instances whose mask the transform emptied (an object zoomed out of the picture, a sliver
      resampled away) are dropped with their box and label: nothing is left to learn from.
    * With ``boxes_from_masks=True`` (the default) each box is re-made as the tight box of its
      transformed mask. v2 moves a box by its corners and resamples a mask pixel by pixel. The
      two agree within a pixel for a flip, or a zoom that keeps the object whole, but not when a
      zoom cuts the object at the image border (the box is only clamped: the clamped box of a
      half-visible circle is taller than what is left of it), nor when shrinking resamples a thin
      sliver of an occluded mask away. In this package a box is always the tight box of its
      mask (Shapes and COCO data alike), and this keeps it so.
    """

    def __init__(self, transform, boxes_from_masks: bool = True):
        self.transform = v2.Compose([transform, v2.ToPureTensor()])
        self.boxes_from_masks = boxes_from_masks

    def __repr__(self) -> str:
        transform = self.transform.transforms[0]
        return f"DetectionTransform({transform!r}, boxes_from_masks={self.boxes_from_masks})"

    def __call__(self, image: Tensor, target: dict) -> tuple[Tensor, dict]:
        image, target = self.transform(*to_tv_tensors(image, target))
        masks = target["masks"]
        visible = (masks.flatten(1) != 0).any(dim=1)  # [N]
        if not visible.all():
            kept = {key: target[key][visible] for key in ("boxes", "labels", "masks")}
            target = {**target, **kept}
        if self.boxes_from_masks:
            target["boxes"] = tight_boxes(target["masks"]).to(target["boxes"].dtype)
        return image, target


def as_detection_transform(transforms):
    """What a dataset keeps of its ``transforms`` argument: a v2 transform is wrapped in
    ``DetectionTransform``; ``None`` or any other callable ``(image, target) -> (image, target)``
    is kept as it is."""
    if isinstance(transforms, v2.Transform):
        return DetectionTransform(transforms)
    if transforms is not None and not callable(transforms):
        raise ValueError(
            f"transforms must be a callable (image, target) -> (image, target), got {transforms!r}"
        )
    return transforms


def train_transforms(
    flip_prob: float = 0.5,
    scale_range: tuple[float, float] = (0.75, 1.25),
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.02,
) -> DetectionTransform:
    """The training augmentation: flip, scale jitter, photometric jitter, then sanitize.

    * ``RandomHorizontalFlip(flip_prob)``: a mirrored object is the same class.
    * Scale jitter, ``RandomAffine(scale=scale_range)``: zoom in or out about the image centre
      with the canvas kept, so objects change size *relative to the image*. (Resizing the whole
      image would be undone by the model's own resize to its min/max side.) Zooming out fills the
      border with black; zooming in cuts objects at the border, and their boxes are re-made
      from what is left of their masks (see ``DetectionTransform``).
    * ``ColorJitter``: brightness, contrast, saturation and hue; image only.
    * ``SanitizeBoundingBoxes``: drops boxes (and their labels and masks) left smaller than a
      pixel, e.g. objects zoomed past the border.
    """
    return DetectionTransform(
        v2.Compose(
            [
                v2.RandomHorizontalFlip(flip_prob),
                v2.RandomAffine(degrees=0, scale=scale_range, interpolation=v2.InterpolationMode.BILINEAR),
                v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue),
                v2.SanitizeBoundingBoxes(),
            ]
        )
    )


def collate(batch: list) -> tuple[list[Tensor], list[dict]]:
    """DataLoader ``collate_fn`` for detection: ``[(image, target), ...]`` -> ``(images, targets)``.

    Images of different sizes cannot be stacked into one tensor; the model takes a list and pads
    the batch itself, so the batch stays two lists.
    """
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
