"""Chapter 06's exercises: the tight box of a mask, a horizontal flip of a sample, the resized size."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor
from torchvision.transforms import v2

from ..data import ShapesDataset
from ..data.transforms import DetectionTransform
from ..data.validate import tight_boxes
from ..transform import resize
from .checking import Case, Checker, Exercise, tensors, what_came

__all__ = ["EXERCISES", "CHECKS"]

TIGHT_BOXES = Exercise(
    name="tight_boxes",
    chapter="06",
    title="The box a mask implies",
    task="""\
Write `tight_boxes(masks)`: the tight box `(x0, y0, x1, y1)` of each mask of `masks [N, H, W]` (none
empty), as float `[N, 4]` (section 1.1). Pixel `(i, j)` is the unit square `[j, j + 1] x [i, i + 1]`,
so the box runs from the first column holding the object to the last such column **+ 1**, and
likewise for the rows. No masks give `[0, 4]`.

Example: a 6 x 9 mask whose rows 1..3, columns 2..6 are set has the box `tensor([[2., 1., 7., 4.]])`.""",
    stub='''\
import torch


def tight_boxes(masks):
    """The tight box (x0, y0, x1, y1) of each of masks [N, H, W] -> float [N, 4]."""
    raise NotImplementedError  # your turn
''',
    hint="""\
`masks[n].any(dim=0)` tells which columns hold the object and `.any(dim=1)` which rows;
`torch.where(...)[0]` lists them, and their first and last entries (plus one) are the box.""",
)

HFLIP_SAMPLE = Exercise(
    name="hflip_sample",
    chapter="06",
    title="A horizontal flip of a sample",
    task="""\
Write `hflip_sample(image, target)`: mirror a sample left to right, as `train_transforms()` does
half the time (section 4). `image [C, H, W]`; `target` a dict with `boxes [N, 4]`, `labels [N]` and
`masks [N, H, W]`. Return `(image, target)`: the image and the masks mirrored, each box mirrored with
them, the labels unchanged. Return a new dict: do not change the one you are given.

Example: on an image 3 pixels wide, a box `(0, 0, 1, 2)` over the first column becomes
`(2, 0, 3, 2)`, over the last column.""",
    stub='''\
import torch


def hflip_sample(image, target):
    """Mirror image [C, H, W] and target {boxes [N, 4], labels [N], masks [N, H, W]} left to right."""
    raise NotImplementedError  # your turn
''',
    hint="""\
`torch.flip(x, dims=[-1])` mirrors the columns. A box edge at `x` moves to `W - x` (the pixel
convention of section 1.1: no `- 1`), and the left edge comes from the right one.""",
)

RESIZED_SIZE = Exercise(
    name="resized_size",
    chapter="06",
    title="The size the network sees",
    task="""\
Write `resized_size(height, width, min_size, max_size)`: the `(height, width)` an image of that size
has after `prepare_batch`'s resize (section 3), as a tuple of two ints. The scale makes the short side
`min_size`, unless the long side would then exceed `max_size`, in which case the long side becomes
`max_size`; each side becomes `floor(side x scale)`, as `F.interpolate` computes it (no rounding).

Example: `resized_size(480, 640, 800, 1333)` is `(800, 1066)`.""",
    stub='''\
import math


def resized_size(height, width, min_size, max_size):
    """(height, width) of an image of that size after the resize to min_size / max_size -> (int, int)."""
    raise NotImplementedError  # your turn
''',
    hint="""\
The scale is the smaller of `min_size / min(height, width)` and `max_size / max(height, width)`;
`math.floor(height * scale)` is the new height.""",
)


def _tight_cases() -> list[Case]:
    block = torch.zeros(1, 6, 9, dtype=torch.uint8)
    block[0, 1:4, 2:7] = 1
    pixel = torch.zeros(1, 3, 4, dtype=torch.uint8)
    pixel[0, 2, 1] = 1
    corner = torch.zeros(1, 4, 5, dtype=torch.uint8)
    corner[0, 2:, 3:] = 1  # touches the right and bottom edges
    two_parts = torch.zeros(2, 5, 6, dtype=torch.uint8)
    two_parts[0, 0, 0] = two_parts[0, 3, 4] = 1  # one object in two pieces
    two_parts[1, 1:3, 2] = 1
    cases = [Case("by hand", (block,)), Case("one pixel", (pixel,)),
             Case("mask at the image's edge", (corner,)), Case("mask in pieces", (two_parts,)),
             Case("no masks", (torch.zeros(0, 5, 6, dtype=torch.uint8),))]
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        masks = (torch.rand(4, 20, 24, generator=generator) > 0.97).to(torch.uint8)
        masks[:, 5 + seed, 7] = 1  # none empty
        cases.append(Case("random", (masks,), f"seed {seed}"))
    return cases


def _flip_reference(image: Tensor, target: dict) -> tuple[Tensor, dict]:
    # The library's augmentation with a flip that always happens; boxes flipped as v2 flips them.
    flip = DetectionTransform(v2.RandomHorizontalFlip(p=1.0), boxes_from_masks=False)
    image, target = flip(image, target)
    return image, {key: target[key] for key in ("boxes", "labels", "masks")}


def _compare_samples(expected: tuple, got) -> str | None:
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and isinstance(got[1], dict)):
        return f"expected a pair (image, target dict), got {what_came(got)}"
    problem = tensors(atol=1e-6)(expected[0], got[0])
    if problem:
        return f"image: {problem}"
    for key in ("boxes", "labels", "masks"):
        if key not in got[1]:
            return f"the target has no {key!r}"
        problem = tensors(atol=1e-5)(expected[1][key], got[1][key])
        if problem:
            return f"target[{key!r}]: {problem}"
    return None


def _sample(image: Tensor, boxes, labels, masks: Tensor) -> tuple[Tensor, dict]:
    return image, {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                   "labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}


@lru_cache(maxsize=1)
def _shapes_samples() -> list[tuple[Tensor, dict]]:
    """Three Shapes images and their targets, drawn once (the checker copies every input it gives)."""
    dataset = ShapesDataset(3, seed=3)
    return [dataset[index] for index in range(3)]


def _flip_cases() -> list[Case]:
    first_column = torch.tensor([[[1, 0, 0], [1, 0, 0]]], dtype=torch.uint8)
    wide = torch.zeros(2, 4, 7, dtype=torch.uint8)
    wide[0, 1:3, 0:2] = 1
    wide[1, 0:4, 5:7] = 1  # touches the right edge
    noise = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    cases = [Case("by hand", _sample(torch.arange(6.0).reshape(1, 2, 3), [[0, 0, 1, 2]], [1], first_column)),
             Case("image wider than tall", _sample(torch.arange(28.0).reshape(1, 4, 7),
                                                   [[0, 1, 2, 3], [5, 0, 7, 4]], [2, 3], wide)),
             Case("no objects", _sample(noise, [], [], torch.zeros(0, 4, 5, dtype=torch.uint8)))]
    for index, (image, target) in enumerate(_shapes_samples()):
        cases.append(Case("Shapes image", _sample(image, target["boxes"].tolist(), target["labels"].tolist(),
                                                  target["masks"]), f"ShapesDataset(3, seed=3)[{index}]"))
    return cases


def _size_reference(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    resized, _ = resize(torch.zeros(1, height, width), None, min_size, max_size)  # what prepare_batch does
    return tuple(resized.shape[-2:])


def _size_cases() -> list[Case]:
    coco = (800, 1333)
    cases = [Case("by hand", (480, 640, *coco)), Case("by hand", (400, 600, *coco)),
             Case("square", (512, 512, *coco)), Case("the long side limits", (200, 1000, *coco)),
             Case("the long side limits", (1000, 200, *coco)),
             Case("larger than needed", (1200, 1600, *coco)),
             Case("already the size", (128, 128, 128, 128))]
    generator = torch.Generator().manual_seed(0)
    for height, width in torch.randint(50, 2000, (6, 2), generator=generator).tolist():
        cases.append(Case("random", (height, width, *coco), "seed 0"))
    return cases


EXERCISES = [TIGHT_BOXES, HFLIP_SAMPLE, RESIZED_SIZE]
CHECKS = {
    "tight_boxes": Checker(TIGHT_BOXES, tight_boxes, _tight_cases, tensors(kind="float")),
    "hflip_sample": Checker(HFLIP_SAMPLE, _flip_reference, _flip_cases, _compare_samples),
    "resized_size": Checker(RESIZED_SIZE, _size_reference, _size_cases, tensors(kind="int")),
}
