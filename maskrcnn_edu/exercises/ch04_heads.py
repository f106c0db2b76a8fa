"""Chapter 04's exercises: the FPN level of a box, and NMS within each class."""
from __future__ import annotations

import torch
from torch import Tensor

from ..boxes import batched_nms
from ..roi_ops import fpn_level
from .checking import Case, Checker, Exercise, box_rows, random_boxes, tensors

__all__ = ["EXERCISES", "CHECKS"]

FPN_LEVEL = Exercise(
    name="fpn_level",
    chapter="04",
    title="The FPN level of a box",
    task="""\
Write `fpn_level(boxes, canonical_size)`: the level each RoI of `boxes [K, 4]` is read from, by the
FPN paper's rule (section 3), as int64 `[K]`:

    k = floor(4 + log2(sqrt(w h) / canonical_size)),   clamped to 2 ... 5.

A box of no area goes to the finest level, 2.

Example: squares of sides 16, 112, 224, 500 and 1000 with `canonical_size=224` give
`tensor([2, 3, 4, 5, 5])`.""",
    stub='''\
import torch


def fpn_level(boxes, canonical_size):
    """The FPN level (2..5) of each of boxes [K, 4] -> int64 [K]."""
    raise NotImplementedError  # your turn
''',
    hint="""\
Stay in tensors: `torch.log2` of a zero size is `-inf`, whose floor clamps to 2 without a special
case. `clamp(min=2, max=5)`, then `.to(torch.int64)`.""",
)

CLASS_NMS = Exercise(
    name="class_nms",
    chapter="04",
    title="NMS within each class",
    task="""\
Write `class_nms(boxes, scores, labels, threshold)`: the heads' NMS (section 6). Run greedy NMS (your
`greedy_nms` of chapter 03: suppress at IoU greater than `threshold`, ties by index) separately within
each class of `labels [N]`, so that boxes of different classes never suppress each other. Return the
indices of all kept boxes, int64 `[K]`, sorted by score, best first; of equal scores the lower index
first.

Example: boxes `(0, 0, 10, 10)`, `(1, 1, 11, 11)`, `(0, 0, 10, 10)` with scores `0.9, 0.8, 0.7`, labels
`1, 1, 2` and threshold 0.5 give `tensor([0, 2])`: box 1 is suppressed by box 0, box 2 is another class.""",
    stub='''\
import torch


def class_nms(boxes, scores, labels, threshold):
    """Indices int64 [K] kept by NMS within each class (labels [N]) of boxes [N, 4], best score first."""
    raise NotImplementedError  # your turn
''',
    hint="""\
Loop over `labels.unique()`: `torch.where(labels == c)[0]` maps a class's own indices back to the
whole set. Put the survivors of all classes in index order, then sort them by score with
`torch.sort(..., descending=True, stable=True)`.""",
)


def _square_boxes(sides) -> Tensor:
    return torch.tensor([[0.0, 0.0, float(s), float(s)] for s in sides]).reshape(-1, 4)


def _level_cases() -> list[Case]:
    cases = [Case("by hand", (_square_boxes([16, 112, 224, 500, 1000]), 224.0)),
             Case("on a level's edge", (_square_boxes([111, 112, 223, 224, 447, 448]), 224.0)),
             Case("box of no area", (box_rows([[5, 5, 5, 30], [10, 10, 10, 10]]), 224.0)),
             Case("scaled canonical size", (_square_boxes([8, 17, 18, 36, 72, 150]), 35.84)),
             Case("empty", (box_rows([]), 224.0))]
    for seed, canonical in zip(range(3), (224.0, 35.84, 224.0)):
        generator = torch.Generator().manual_seed(seed)
        cases.append(Case("random", (random_boxes(20, generator, size=1000.0 if canonical > 100 else 128.0),
                                     canonical), f"seed {seed}"))
    return cases


def _nms_cases() -> list[Case]:
    same_place = box_rows([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]])
    apart = box_rows([[0, 0, 10, 10], [20, 0, 30, 10], [1, 1, 11, 11]])
    cases = [Case("by hand", (same_place, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 2]), 0.5)),
             Case("classes interleaved", (same_place, torch.tensor([0.7, 0.9, 0.8]), torch.tensor([1, 2, 1]),
                                          0.5)),
             Case("tied scores across classes", (apart, torch.full((3,), 0.6), torch.tensor([3, 1, 3]), 0.5)),
             Case("empty", (box_rows([]), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5))]
    for seed, threshold in zip(range(3), (0.5, 0.3, 0.7)):
        generator = torch.Generator().manual_seed(seed)
        boxes = random_boxes(40, generator, size=48.0) + torch.tensor([0.0, 0.0, 8.0, 8.0])
        scores = torch.rand(40, generator=generator).mul(20).round().div(20)  # steps of 0.05: some ties
        labels = torch.randint(1, 4, (40,), generator=generator)
        cases.append(Case("random", (boxes, scores, labels, threshold), f"seed {seed}, 3 classes"))
    return cases


EXERCISES = [FPN_LEVEL, CLASS_NMS]
CHECKS = {
    "fpn_level": Checker(FPN_LEVEL, lambda boxes, canonical_size: fpn_level(boxes, 2, 5, canonical_size),
                         _level_cases, tensors(kind="int")),
    "class_nms": Checker(CLASS_NMS, batched_nms, _nms_cases, tensors(kind="int")),
}
