"""Shapes: a synthetic instance-segmentation set of squares, circles and triangles.

After the Keras Mask R-CNN ``train_shapes`` notebook, drawn with numpy instead of OpenCV: a
background of one random colour, and 1..``max_shapes`` shapes of random class, colour, size and
position. Nothing to download, and a small model learns it on a laptop CPU in minutes.

Two variants (``ShapesDataset(..., variant=...)``; the class docstring tabulates the differences):

* ``"edu"``, the default: this package's own set. Shapes of 8..32 px half-size stay inside the
  image, and every shape's colour stands out from the background.
* ``"keras"``: the notebook's own rules. Half-sizes 20..32 px, centres anywhere in 20..107 (so
  shapes cross the border), any colours, and of two shapes whose boxes overlap by IoU > 0.3 only
  the later-drawn one is kept (``later_wins``).

How image ``i`` is made (``draw_shapes``):

1. ``random_shapes`` (edu) or ``random_keras_shapes``: one generator, seeded by ``(seed, i)``
   and the variant (``shape_generator``), draws the background colour and every shape. Image ``i``
   is therefore a pure function of ``(seed, i, variant)`` (and the drawing options), whatever
   the order of access, the process, or ``num_images``. The keras variant then drops the shapes
   that ``later_wins`` rejects.
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
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..boxes import nms
from .transforms import as_detection_transform
from .validate import image_from_uint8, tight_boxes

__all__ = [
    "ShapesDataset",
    "ShapeSpecs",
    "VARIANTS",
    "shape_generator",
    "random_shapes",
    "random_keras_shapes",
    "nominal_boxes",
    "later_wins",
    "shape_mask",
    "rasterize",
    "front_shape",
    "visible_parts",
    "paint",
    "render",
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
        return ShapeSpecs(self.background, self.labels[keep], self.centres[keep], self.sizes[keep],
                          self.colours[keep])


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


# The keras variant: the Keras notebook's numbers at 128 px. Its half-sizes and its margin from the
# edges are both ``buffer = 20`` px there; other image sizes scale the buffer (see keras_buffer).
KERAS_IMAGE_SIZE, KERAS_BUFFER = 128, 20
# Of two shapes whose nominal boxes overlap by more than this IoU, only the later-drawn is kept.
KERAS_MAX_IOU = 0.3


def keras_buffer(image_size: int) -> int:
    """The keras variant's smallest half-size and margin of the centres from the edges: 20 px at
    128 px (the notebook's ``buffer``), in proportion at other sizes."""
    return round(KERAS_BUFFER * image_size / KERAS_IMAGE_SIZE)


def random_keras_shapes(rng: np.random.Generator, image_size: int, max_shapes: int) -> ShapeSpecs:
    """Draw what the Keras notebook's ``random_image`` draws: a background and 1..``max_shapes``
    shapes, *every* shape drawn, before the overlap rule (``later_wins``) removes any.

    All numbers are integers, uniform, bounds included (at 128 px, ``buffer = 20``): every channel
    of the background and of each colour in 0..255 (no contrast guarantee); the centre's ``x`` and
    ``y`` in ``buffer .. image_size - buffer - 1`` (20..107), so a shape may cross the border;
    the half-size in ``buffer .. image_size // 4`` (20..32).

    Integer positions name pixels, as OpenCV's do: centre ``(x, y)`` is pixel ``(x, y)``, whose
    centre is ``(x + 0.5, y + 0.5)`` in this package's continuous frame; ``centres`` holds the
    latter, so ``rasterize`` draws the notebook's shapes (a square covers pixels ``x - s .. x + s``;
    on the slanted and curved edges OpenCV's rasterizer may differ from the pixel-centre test by
    a pixel).

    Image sizes other than 128 scale ``buffer`` (``keras_buffer``); the largest half-size stays
    ``image_size // 4``.
    """
    buffer = keras_buffer(image_size)
    count = int(rng.integers(1, max_shapes + 1))
    background = rng.integers(0, 256, size=3)
    labels = rng.integers(SQUARE, TRIANGLE + 1, size=count)
    colours = rng.integers(0, 256, size=(count, 3))
    pixels = rng.integers(buffer, image_size - buffer, size=(count, 2))  # (x, y), high bound excluded
    sizes = rng.integers(buffer, image_size // 4 + 1, size=count)
    return ShapeSpecs(
        background=background.astype(np.uint8),
        labels=labels.astype(np.int64),
        centres=pixels + 0.5,
        sizes=sizes.astype(np.float64),
        colours=colours.astype(np.uint8),
    )


def nominal_boxes(specs: ShapeSpecs) -> np.ndarray:
    """The box the overlap rule compares, ``(x - s, y - s, x + s, y + s)`` for every class ->
    float ``[K, 4]``.

    As in the Keras notebook it is the same square for a triangle, though a triangle is wider
    (its base spans ``x +- s / sin 60``, 1.15 s), and it ignores the image border.
    """
    s = specs.sizes[:, None]
    return np.concatenate([specs.centres - s, specs.centres + s], axis=1)


def later_wins(specs: ShapeSpecs, max_iou: float = KERAS_MAX_IOU) -> np.ndarray:
    """The Keras notebook's overlap rule -> bool ``[K]``, which shapes to keep.

    Non-maximum suppression with the drawing order as the score: going from the last-drawn shape
    to the first, a shape is kept unless its ``nominal_boxes`` box overlaps the box of a shape
    already kept by IoU > ``max_iou``. So of two overlapping shapes the later one stays, and a
    shape removed this way removes no other (with A, B, C drawn in that order, C overlapping B
    and B overlapping A, C and A are kept).
    """
    boxes = torch.from_numpy(nominal_boxes(specs))
    drawing_order = torch.arange(len(boxes), dtype=boxes.dtype)  # later-drawn = higher score
    keep = np.zeros(len(boxes), dtype=bool)
    keep[nms(boxes, drawing_order, max_iou).numpy()] = True
    return keep


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


def shape_mask(label: int, x: int, y: int, size: int, image_size: int = KERAS_IMAGE_SIZE) -> np.ndarray:
    """The full mask of one shape centred on pixel ``(x, y)`` with half-size ``size``, as the
    keras variant draws it -> bool ``[image_size, image_size]``.

    Integer positions name pixels as in the Keras notebook (see ``random_keras_shapes``): a square
    covers columns and rows ``x - size .. x + size`` and ``y - size .. y + size``; a triangle has
    its apex on row ``y - size`` and its base on row ``y + size``.
    """
    if label not in INSIDE:
        raise ValueError(
            f"shape_mask: label must be one of {sorted(INSIDE)} (square, circle, triangle), got {label!r}"
        )
    one = ShapeSpecs(
        background=np.zeros(3, np.uint8),
        labels=np.array([label], np.int64),
        centres=np.array([[x + 0.5, y + 0.5]]),
        sizes=np.array([size], np.float64),
        colours=np.zeros((1, 3), np.uint8),
    )
    return rasterize(one, image_size)[0]


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


@dataclass(frozen=True)
class Variant:
    """How one variant of the set draws an image.

    ``sample(rng, image_size, max_shapes)`` draws every shape; ``select(specs)``, if not None,
    returns bool ``[K]``, the shapes actually drawn; ``stream`` is appended to ``[seed, index]``
    to seed the variant's generator; ``min_pixels`` is its default smallest visible shape.
    """

    sample: Callable[[np.random.Generator, int, int], ShapeSpecs]
    select: Callable[[ShapeSpecs], np.ndarray] | None
    stream: tuple[int, ...]
    min_pixels: int


VARIANTS = {
    # 16 pixels: a 4 x 4 patch, one cell of the finest FPN level (stride 4), as before variants.
    "edu": Variant(sample=random_shapes, select=None, stream=(), min_pixels=16),
    # The notebook keeps every shape with any visible pixel: only empty masks are dropped.
    # Stream tag 1, not 0: numpy pads a seed list with zeros, so [seed, i, 0] is [seed, i], edu's.
    "keras": Variant(sample=random_keras_shapes, select=later_wins, stream=(1,), min_pixels=1),
}


def check_variant(variant: str) -> Variant:
    """The ``Variant`` named ``variant``; ``ValueError`` naming the allowed values otherwise."""
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, VARIANTS))}, got {variant!r}")
    return VARIANTS[variant]


def shape_generator(seed: int, index: int, variant: str = "edu") -> np.random.Generator:
    """The generator that draws image ``index`` of the set ``(seed, variant)``: seeded by
    ``[seed, index]`` (edu) or ``[seed, index, 1]`` (keras), so image ``index`` needs no other."""
    return np.random.default_rng([seed, index, *check_variant(variant).stream])


def render(specs: ShapeSpecs, image_size: int, min_pixels: int):
    """Draw ``specs`` in order -> ``(image uint8 [H, W, 3], masks bool [N, H, W], labels int64 [N])``.

    A shape showing fewer than ``min_pixels`` pixels is removed before painting, so the image
    never shows an object that has no annotation. Removing a shape only uncovers pixels of the
    others, so no other shape falls below the limit by it, and one recomputation is enough.
    """
    masks = rasterize(specs, image_size)
    front = front_shape(masks)
    shown = np.bincount(front.ravel(), minlength=len(masks) + 1)[1:]  # [K] pixels each shape shows
    large_enough = shown >= min_pixels
    if not large_enough.all():
        specs, masks = specs.subset(large_enough), masks[large_enough]
        front = front_shape(masks)
    return paint(specs, front), visible_parts(front, len(masks)), specs.labels


def draw_shapes(
    rng: np.random.Generator,
    image_size: int = 128,
    max_shapes: int = 4,
    min_pixels: int | None = None,
    variant: str = "edu",
):
    """One image and its instances -> ``(image uint8 [H, W, 3], masks bool [N, H, W], labels int64 [N])``.

    The variant's ``sample`` draws the shapes, its ``select`` (keras: ``later_wins``) keeps some,
    and ``render`` draws them. ``min_pixels`` defaults to the variant's: 16 for edu (a 4 x 4
    patch, one cell of the finest FPN level), 1 for keras (only shapes left with no pixel at all
    are dropped). The last shape is never covered, so an image has at least one instance whenever
    the last shape shows ``min_pixels`` pixels (with keras's default, always: its centre pixel is
    in the image).
    """
    rules = check_variant(variant)
    min_pixels = rules.min_pixels if min_pixels is None else min_pixels
    specs = rules.sample(rng, image_size, max_shapes)
    if rules.select is not None:
        specs = specs.subset(rules.select(specs))
    return render(specs, image_size, min_pixels)


class ShapesDataset(Dataset):
    """``num_images`` Shapes images of ``image_size`` x ``image_size``, drawn on demand.

    ``dataset[i]`` -> ``(image, target)``: ``image`` float ``[3, H, W]`` in 0..1; ``target`` with
    ``boxes [N, 4]`` float32 (tight boxes of the masks), ``labels [N]`` int64 in 1..3 (see
    ``class_names``), ``masks [N, H, W]`` uint8 (disjoint: occluded pixels belong to the shape
    in front), ``image_id`` = ``i``.

    ``variant`` picks the rules (numbers at ``image_size = 128``; ``x, y`` the centre, ``s`` the
    half-size: half a square's side, a circle's radius, half a triangle's height):

    ============= ========================================== ==============================================
    rule          ``"edu"`` (default): this package's        ``"keras"``: the Keras notebook's
    ============= ========================================== ==============================================
    shapes        1..``max_shapes`` (4), all drawn           1..``max_shapes`` (4) drawn, then of two whose
                                                             boxes ``x +- s, y +- s`` overlap by IoU > 0.3
                                                             only the later-drawn is kept (``later_wins``)
    half-size s   uniform real in 8..32                      integer in 20..32
    centre x, y   uniform real in s .. 128 - s: squares and  integer pixel in 20..107: shapes cross the
                  circles stay inside the image              border (by up to 12 px)
    colours       background any RGB; each shape channel     background and shapes any RGB, uniform
                  64..192 levels from the background's       0..255 per channel, no contrast guarantee
    occlusion     later shapes cover earlier ones            the same
    small parts   a shape showing < ``min_pixels`` (16)      only empty masks are dropped
                  pixels is removed, as if never drawn       (``min_pixels`` 1)
    geometry      triangle apex ``y - s``, base ``y + s``,   the same equations, centred on a pixel: a
                  base corners ``x +- s / sin 60``           square covers pixels ``x - s .. x + s``
    random stream ``default_rng([seed, i])``                 ``default_rng([seed, i, 1])``
    ============= ========================================== ==============================================

    Image ``i`` depends on ``(seed, i, variant)`` and the drawing options only; ``drawn_shapes(i)``
    gives the random draws behind it. ``min_pixels`` defaults to the variant's (16 edu, 1 keras).
    ``transforms``, if given, is applied to ``(image, target)``; a ``torchvision.transforms.v2``
    transform is wrapped with ``DetectionTransform`` so that boxes and masks follow the image.
    """

    class_names = list(CLASS_NAMES)

    def __init__(
        self,
        num_images: int,
        image_size: int = 128,
        seed: int = 0,
        max_shapes: int = 4,
        min_pixels: int | None = None,
        transforms=None,
        variant: str = "edu",
    ):
        rules = check_variant(variant)
        min_pixels = rules.min_pixels if min_pixels is None else min_pixels
        for name, value, low in (
            ("num_images", num_images, 0),
            ("image_size", image_size, 16),
            ("seed", seed, 0),
            ("max_shapes", max_shapes, 1),
            ("min_pixels", min_pixels, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"ShapesDataset: {name} must be an integer >= {low}, got {value!r}")
        self.variant = variant
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
            f"max_shapes={self.max_shapes}, min_pixels={self.min_pixels}, variant={self.variant!r})"
        )

    def _check_index(self, index: int) -> int:
        """``index`` in ``-len .. len - 1`` -> ``0 .. len - 1``; ``IndexError`` otherwise."""
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} is out of range for a ShapesDataset of {self.num_images} images")
        return int(index) % self.num_images

    def drawn_shapes(self, index: int) -> ShapeSpecs:
        """The random draws behind image ``index``: *every* shape drawn, in drawing order, before
        any is removed (by keras's ``later_wins``, or for showing fewer than ``min_pixels``)."""
        rng = shape_generator(self.seed, self._check_index(index), self.variant)
        return VARIANTS[self.variant].sample(rng, self.image_size, self.max_shapes)

    def __getitem__(self, index: int):
        index = self._check_index(index)
        rng = shape_generator(self.seed, index, self.variant)
        image, masks, labels = draw_shapes(rng, self.image_size, self.max_shapes, self.min_pixels,
                                           self.variant)
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
