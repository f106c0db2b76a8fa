"""Shapes: a synthetic instance-segmentation set of squares, circles and triangles.

The set of the Keras Mask R-CNN ``train_shapes`` notebook, drawn with numpy instead of OpenCV:
a background of one random colour, and 1..``max_shapes`` shapes of random class, colour, size and
position. Nothing to download, and a small model learns it on a laptop CPU in minutes.

How image ``i`` is made (``draw_shapes``):

1. ``random_shapes``: one generator, ``np.random.default_rng([seed, i])``, draws the background
   colour and every shape. Image ``i`` is therefore a pure function of ``(seed, i)`` (and the
   drawing options), whatever the order of access, the process, or ``num_images``.
2. ``rasterize``: each shape becomes a full mask ``[K, H, W]``, all shapes at once, by testing
   every pixel centre against the shape's equation on a coordinate grid.
3. ``front_shape``, ``visible_parts``: shapes are drawn in order, so a later shape covers an
   earlier one; each mask keeps only the pixels where its shape is in front. A shape left with
   fewer than ``min_pixels`` visible pixels is removed, as if never drawn, and the rest recomputed.
4. ``paint``: every pixel takes the colour of the shape it shows, or the background's.

Boxes are the tight boxes of the visible masks, so they describe exactly what the image shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import as_detection_transform
from .validate import image_from_uint8, tight_boxes

__all__ = [
    "ShapesDataset",
    "ShapeSpecs",
    "random_shapes",
    "rasterize",
    "front_shape",
    "visible_parts",
    "paint",
    "draw_shapes",
]

CLASS_NAMES = ("background", "square", "circle", "triangle")
SQUARE, CIRCLE, TRIANGLE = 1, 2, 3

# Each channel of a shape's colour differs from the background's by 64..192 levels (see
# random_shapes), so every shape stands out from its background and stays learnable.
MIN_CONTRAST = 64


@dataclass
class ShapeSpecs:
    """The random draws behind one image, ``K`` shapes in drawing order.

    ``background [3]`` uint8 colour; ``labels [K]`` int64 classes (1 square, 2 circle,
    3 triangle); ``centres [K, 2]`` float ``(x, y)`` in pixels; ``sizes [K]`` float half-size
    (half the side of a square, the radius of a circle, half the height of a triangle);
    ``colours [K, 3]`` uint8.
    """

    background: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    sizes: np.ndarray
    colours: np.ndarray

    def subset(self, keep: np.ndarray) -> "ShapeSpecs":
        """The shapes where ``keep [K]`` (bool) is true, in the same order, same background."""
        return ShapeSpecs(self.background, self.labels[keep], self.centres[keep], self.sizes[keep], self.colours[keep])


def random_shapes(rng: np.random.Generator, image_size: int, max_shapes: int) -> ShapeSpecs:
    """Draw a background and 1..``max_shapes`` shapes for an ``image_size`` square image.

    Half-sizes are uniform in ``[image_size / 16, image_size / 4]`` (8..32 px at 128), centres
    uniform over the positions that keep a square or circle inside the image.
    """
    count = int(rng.integers(1, max_shapes + 1))
    background = rng.integers(0, 256, size=3)
    labels = rng.integers(SQUARE, TRIANGLE + 1, size=count)
    sizes = rng.uniform(image_size / 16, image_size / 4, size=count)
    centres = rng.uniform(sizes[:, None], image_size - sizes[:, None], size=(count, 2))
    # Offsetting the background by 64..192 levels per channel, modulo 256, keeps every channel at
    # least MIN_CONTRAST away from the background's (|d| or 256 - |d|, both >= 64).
    offsets = rng.integers(MIN_CONTRAST, 256 - MIN_CONTRAST + 1, size=(count, 3))
    colours = (background[None, :] + offsets) % 256
    return ShapeSpecs(
        background=background.astype(np.uint8),
        labels=labels.astype(np.int64),
        centres=centres,
        sizes=sizes,
        colours=colours.astype(np.uint8),
    )


@lru_cache(maxsize=8)
def _pixel_centres(image_size: int) -> np.ndarray:
    """``[image_size]`` coordinates of the pixel centres, ``0.5, 1.5, ...`` (a pixel is a unit square)."""
    return np.arange(image_size, dtype=np.float32) + 0.5


# Whether a pixel centre at offset (dx, dy) from a shape's centre lies inside a shape of half-size s.
# Arguments broadcast: dx [K, 1, W], dy [K, H, 1], s [K, 1, 1] -> [K, H, W].
def _inside_square(dx, dy, s):
    return np.maximum(np.abs(dx), np.abs(dy)) <= s


def _inside_circle(dx, dy, s):
    return dx * dx + dy * dy <= s * s


def _inside_triangle(dx, dy, s):
    # Equilateral, apex up, height 2s: above the base (dy <= s; y grows downwards) and inside
    # both slanted sides, which rise at 60 degrees from the base corners to the apex at dy = -s.
    return (dy <= s) & (np.float32(np.sqrt(3)) * np.abs(dx) <= dy + s)


INSIDE = {SQUARE: _inside_square, CIRCLE: _inside_circle, TRIANGLE: _inside_triangle}


def rasterize(specs: ShapeSpecs, image_size: int) -> np.ndarray:
    """Full (unoccluded) masks of all shapes -> bool ``[K, H, W]``, ``H = W = image_size``.

    A pixel belongs to a shape when its centre does. All shapes of one class are tested at once,
    on the offsets of every pixel centre from every shape centre.
    """
    centres = _pixel_centres(image_size)
    dx = centres[None, None, :] - specs.centres[:, 0, None, None].astype(np.float32)  # [K, 1, W]
    dy = centres[None, :, None] - specs.centres[:, 1, None, None].astype(np.float32)  # [K, H, 1]
    s = specs.sizes[:, None, None].astype(np.float32)  # [K, 1, 1]
    masks = np.zeros((len(specs.labels), image_size, image_size), dtype=bool)
    for label, inside in INSIDE.items():
        of_class = specs.labels == label  # [K]
        if of_class.any():
            masks[of_class] = inside(dx[of_class], dy[of_class], s[of_class])
    return masks


def _shape_numbers(count: int) -> np.ndarray:
    """``[count, 1, 1]`` uint8: shape ``k`` is number ``k + 1``; 0 is the background."""
    return np.arange(1, count + 1, dtype=np.uint8)[:, None, None]


def front_shape(masks: np.ndarray) -> np.ndarray:
    """Which shape each pixel shows: bool ``[K, H, W]`` -> uint8 ``[H, W]``, ``k + 1`` for shape
    ``k``, 0 for the background.

    Shapes are drawn in order, so the one in front is the *last* that covers the pixel: with shape
    ``k`` numbered ``k + 1``, the largest number over the shapes covering a pixel.
    """
    return (masks.view(np.uint8) * _shape_numbers(len(masks))).max(axis=0, initial=0)


def visible_parts(front: np.ndarray, count: int) -> np.ndarray:
    """What each of ``count`` shapes still shows once the later ones are drawn, from
    ``front [H, W]`` -> bool ``[count, H, W]``, disjoint."""
    return front[None] == _shape_numbers(count)


def paint(specs: ShapeSpecs, front: np.ndarray) -> np.ndarray:
    """The image: each pixel the colour of the shape it shows -> uint8 ``[H, W, 3]``.

    ``front [H, W]`` from ``front_shape`` indexes a palette: row 0 the background, row ``k + 1``
    shape ``k``'s colour.
    """
    palette = np.concatenate([specs.background[None, :], specs.colours], axis=0)  # [K + 1, 3]
    return np.take(palette, front, axis=0)


def draw_shapes(rng: np.random.Generator, image_size: int = 128, max_shapes: int = 4, min_pixels: int = 16):
    """One image and its instances -> ``(image uint8 [H, W, 3], masks bool [N, H, W], labels int64 [N])``.

    A shape showing fewer than ``min_pixels`` pixels (default 16: a 4 x 4 patch, one cell of the
    finest FPN level, stride 4) is removed before painting, so the image never shows an object that has
    no annotation. Removing a shape only uncovers pixels of the others, so no other shape falls
    below the limit by it, and one recomputation is enough. The last shape is never covered, so
    an image has at least one instance whenever the smallest shape has ``min_pixels`` pixels.
    """
    specs = random_shapes(rng, image_size, max_shapes)
    masks = rasterize(specs, image_size)
    front = front_shape(masks)
    shown = np.bincount(front.ravel(), minlength=len(masks) + 1)[1:]  # [K] pixels each shape shows
    large_enough = shown >= min_pixels
    if not large_enough.all():
        specs, masks = specs.subset(large_enough), masks[large_enough]
        front = front_shape(masks)
    return paint(specs, front), visible_parts(front, len(masks)), specs.labels


class ShapesDataset(Dataset):
    """``num_images`` Shapes images of ``image_size`` x ``image_size``, drawn on demand.

    ``dataset[i]`` -> ``(image, target)``: ``image`` float ``[3, H, W]`` in 0..1; ``target`` with
    ``boxes [N, 4]`` float32 (tight boxes of the masks), ``labels [N]`` int64 in 1..3 (see
    ``class_names``), ``masks [N, H, W]`` uint8 (disjoint: occluded pixels belong to the shape
    in front), ``image_id`` = ``i``.

    Image ``i`` depends on ``(seed, i)`` and the drawing options only. ``transforms``, if given,
    is applied to ``(image, target)``; a ``torchvision.transforms.v2`` transform is wrapped with
    ``DetectionTransform`` so that boxes and masks follow the image.
    """

    class_names = list(CLASS_NAMES)

    def __init__(
        self,
        num_images: int,
        image_size: int = 128,
        seed: int = 0,
        max_shapes: int = 4,
        min_pixels: int = 16,
        transforms=None,
    ):
        for name, value, low in (
            ("num_images", num_images, 0),
            ("image_size", image_size, 16),
            ("seed", seed, 0),
            ("max_shapes", max_shapes, 1),
            ("min_pixels", min_pixels, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"ShapesDataset: {name} must be an integer >= {low}, got {value!r}")
        self.num_images = int(num_images)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.max_shapes = int(max_shapes)
        self.min_pixels = int(min_pixels)
        self.transforms = as_detection_transform(transforms)

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(num_images={self.num_images}, image_size={self.image_size}, seed={self.seed}, "
            f"max_shapes={self.max_shapes}, min_pixels={self.min_pixels})"
        )

    def __getitem__(self, index: int):
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} is out of range for a ShapesDataset of {self.num_images} images")
        index = int(index) % self.num_images
        rng = np.random.default_rng([self.seed, index])
        image, masks, labels = draw_shapes(rng, self.image_size, self.max_shapes, self.min_pixels)
        image = image_from_uint8(image)  # [3, H, W] in 0..1
        masks = torch.from_numpy(masks.view(np.uint8))  # bool -> uint8, same bytes
        target = {
            "boxes": tight_boxes(masks),
            "labels": torch.from_numpy(labels),
            "masks": masks,
            "image_id": index,
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
