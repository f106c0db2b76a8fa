"""Chapter 03's exercises: greedy NMS, the per-level top-k, and which objects a set of boxes finds."""
from __future__ import annotations

import torch
from torch import Tensor

from ..boxes import nms
from .checking import Case, Checker, Exercise, box_rows, random_boxes, tensors

__all__ = ["EXERCISES", "CHECKS"]

GREEDY_NMS = Exercise(
    name="greedy_nms",
    chapter="03",
    title="Greedy non-maximum suppression",
    task="""\
Write `greedy_nms(boxes, scores, threshold)`: greedy NMS of `boxes [N, 4]` with `scores [N]` (section
5). Visit the boxes from the best score down; keep a box unless a box *already kept* overlaps it
with IoU **greater than** `threshold` (an IoU equal to the threshold does not suppress). Of two equal
scores, visit the lower index first. Return the kept indices, int64 `[K]`, in the order they were
kept (best score first); no boxes give an empty result.

Example: boxes `(0, 0, 10, 10)`, `(1, 1, 11, 11)`, `(20, 20, 30, 30)` with scores `0.9, 0.8, 0.7`
and threshold 0.5 give `tensor([0, 2])`: the second overlaps the first by IoU 81 / 119.""",
    stub='''\
import torch


def greedy_nms(boxes, scores, threshold):
    """Indices int64 [K] of the boxes [N, 4] that greedy NMS keeps, best score first (scores [N])."""
    raise NotImplementedError  # your turn
''',
    hint="""\
`torch.sort(scores, descending=True, stable=True)` gives the visiting order with ties by index. Your
`box_iou` of chapter 02 gives all overlaps at once; then a plain loop over the sorted boxes, checking
each against the kept ones, is the whole algorithm.""",
)

LEVEL_TOP_K = Exercise(
    name="level_top_k",
    chapter="03",
    title="The best k anchors of each level",
    task="""\
Write `level_top_k(scores, level_sizes, k)`: step 1 of the proposal selection (section 4). `scores [A]`
holds the objectness of all anchors, level after level: the first `level_sizes[0]` belong to P2, the
next `level_sizes[1]` to P3, and so on. Return the indices (into `scores`, int64) of the `k` best
anchors of each level, or all of a level that has fewer, level after level and best first within
each level.

Example: `level_top_k(torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2, 0.7]), [4, 2], 2)` is
`tensor([1, 3, 5, 4])`.""",
    stub='''\
import torch


def level_top_k(scores, level_sizes, k):
    """Indices int64 [T] of the k best scores [A] of each level (level_sizes: anchors per level)."""
    raise NotImplementedError  # your turn
''',
    hint="""\
`scores.split(level_sizes)` cuts the levels apart and `topk` ranks one of them; its indices count from
the start of its level, so add the number of anchors of the levels before it.""",
)

OBJECTS_FOUND = Exercise(
    name="objects_found",
    chapter="03",
    title="Which objects the boxes find",
    task="""\
Write `objects_found(boxes, objects, threshold)`: for each object of `objects [K, 4]`, whether some
box of `boxes [B, 4]` overlaps it with IoU **at least** `threshold`, as a bool tensor `[K]` (section 7;
recall is its mean). With no boxes nothing is found; with no objects the result is empty.

Example: with `boxes = torch.tensor([[0., 0., 2., 1.]])` and `objects = torch.tensor([[0., 0., 4., 1.],
[5., 5., 9., 9.]])`, `objects_found(boxes, objects, 0.5)` is `tensor([True, False])` (IoU exactly 0.5).""",
    stub='''\
import torch


def objects_found(boxes, objects, threshold):
    """For each of objects [K, 4]: does a box of boxes [B, 4] reach IoU >= threshold? -> bool [K]."""
    raise NotImplementedError  # your turn
''',
    hint="""\
Take the IoU matrix objects x boxes (your `box_iou`) and its maximum along the boxes. An empty `boxes`
needs its own line: a maximum over nothing is undefined.""",
)


def _nms_cases() -> list[Case]:
    row = box_rows([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]])  # neighbours overlap by IoU 1/3
    cases = [Case("by hand", (box_rows([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]),
                              torch.tensor([0.9, 0.8, 0.7]), 0.5)),
             Case("scores not in order", (row, torch.tensor([0.5, 0.6, 0.9]), 0.3)),
             Case("a chain", (row, torch.tensor([0.9, 0.8, 0.7]), 0.3)),
             Case("IoU equal to the threshold", (box_rows([[0, 0, 4, 1], [0, 0, 2, 1]]),
                                                 torch.tensor([0.9, 0.8]), 0.5)),
             Case("tied scores", (box_rows([[1, 1, 11, 11], [0, 0, 10, 10], [2, 2, 12, 12]]),
                                  torch.tensor([0.5, 0.5, 0.5]), 0.5)),
             Case("empty", (box_rows([]), torch.zeros(0), 0.5))]
    for seed, threshold in zip(range(3), (0.3, 0.5, 0.7)):
        generator = torch.Generator().manual_seed(seed)
        boxes = random_boxes(30, generator, size=48.0) + torch.tensor([0.0, 0.0, 8.0, 8.0])
        scores = torch.rand(30, generator=generator).mul(10).round().div(10)  # one decimal: many ties
        cases.append(Case("random", (boxes, scores, threshold), f"seed {seed}, scores in steps of 0.1"))
    return cases


def _top_k_reference(scores: Tensor, level_sizes: list[int], k: int) -> Tensor:
    # Step 1 of RegionProposalNetwork.select_proposals, for one image: topk within each level.
    indices, offset = [], 0
    for level_scores in scores.split(level_sizes):
        indices.append(level_scores.topk(min(k, len(level_scores))).indices + offset)
        offset += len(level_scores)
    return torch.cat(indices)


def _top_k_cases() -> list[Case]:
    cases = [Case("by hand", (torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2, 0.7]), [4, 2], 2)),
             Case("a level with fewer than k", (torch.tensor([0.3, 0.1, 0.5, 0.7, 0.2, 0.9, 0.4, 0.6]),
                                                [5, 1, 2], 3)),
             Case("an empty level", (torch.tensor([0.3, 0.1, 0.5, 0.7, 0.2, 0.9]), [3, 0, 3], 2))]
    for seed in range(3):
        scores = torch.randn(48 + 12 + 3, generator=torch.Generator().manual_seed(seed))
        cases.append(Case("random", (scores, [48, 12, 3], 4 + 4 * seed), f"seed {seed}"))
    return cases


def _found_reference(boxes: Tensor, objects: Tensor, threshold: float) -> Tensor:
    from ..explorers.rpn import objects_found  # the chapter's function (its module draws with ipywidgets)
    return objects_found(boxes, objects, threshold)


def _found_cases() -> list[Case]:
    objects = box_rows([[0, 0, 4, 1], [5, 5, 9, 9]])
    cases = [Case("by hand", (box_rows([[0, 0, 3, 1], [6, 5, 9, 9]]), objects, 0.7)),
             Case("IoU equal to the threshold", (box_rows([[0, 0, 2, 1]]), objects, 0.5)),
             Case("no boxes", (box_rows([]), objects, 0.5)),
             Case("no objects", (box_rows([[0, 0, 2, 1]]), box_rows([]), 0.5))]
    for seed, threshold in zip(range(3), (0.5, 0.7, 0.5)):
        generator = torch.Generator().manual_seed(seed)
        cases.append(Case("random", (random_boxes(25, generator), random_boxes(6, generator), threshold),
                          f"seed {seed}"))
    return cases


EXERCISES = [GREEDY_NMS, LEVEL_TOP_K, OBJECTS_FOUND]
CHECKS = {
    "greedy_nms": Checker(GREEDY_NMS, nms, _nms_cases, tensors(kind="int")),
    "level_top_k": Checker(LEVEL_TOP_K, _top_k_reference, _top_k_cases, tensors(kind="int")),
    "objects_found": Checker(OBJECTS_FOUND, _found_reference, _found_cases, tensors(kind="bool")),
}
