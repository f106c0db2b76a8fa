"""Chapter 02's exercises: IoU of two box sets, anchor labels with the low-quality rule, box decoding."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..boxes import BoxCoder, box_iou
from ..matching import IGNORE, Matcher
from .checking import Case, Checker, Exercise, box_rows, random_boxes, tensors

__all__ = ["EXERCISES", "CHECKS"]

BOX_IOU = Exercise(
    name="box_iou",
    chapter="02",
    title="IoU of two sets of boxes",
    task="""\
Write `box_iou(boxes1, boxes2)`: the IoU of every box of `boxes1 [N, 4]` with every box of
`boxes2 [M, 4]`, as an `[N, M]` tensor (section 5). Boxes are `(x0, y0, x1, y1)` in pixels, width
`x1 - x0`. Boxes that only touch, or do not meet at all, have IoU 0; either set may be empty.

Example: `box_iou(torch.tensor([[0., 0., 4., 4.]]), torch.tensor([[2., 1., 6., 5.]]))` is
`[[6 / 26]]`: intersection 2 x 3 = 6, union 16 + 16 - 6 = 26.""",
    stub='''\
import torch


def box_iou(boxes1, boxes2):
    """IoU of every pair: boxes1 [N, 4], boxes2 [M, 4] (x0, y0, x1, y1) -> [N, M]."""
    raise NotImplementedError  # your turn
''',
    hint="""\
Index with `boxes1[:, None, k]` and `boxes2[None, :, k]` to broadcast to `[N, M]`: the overlap along
x is `min(x1) - max(x0)`, clamped at 0, and likewise along y. The union counts the intersection once.""",
)

ANCHOR_LABELS = Exercise(
    name="anchor_labels",
    chapter="02",
    title="Anchor labels with the low-quality rule",
    task="""\
Write `anchor_labels(iou, high, low)`: the RPN's label of every anchor from the IoU matrix
`iou [G, N]` (objects x anchors), as an int64 tensor `[N]` (section 6):

- `1` (positive) if the anchor's best IoU with any object is `>= high`,
- `0` (background) if it is `< low`,
- `-1` (ignored) in between;
- then the low-quality rule: for every object, the anchor(s) whose IoU with it equals that object's
  best IoU (ties included) are positive too, whatever that IoU is.

An image without objects (`G = 0`) has only background anchors.

Example: `anchor_labels(torch.tensor([[0.8, 0.5, 0.1, 0.0, 0.2], [0.1, 0.2, 0.4, 0.6, 0.2]]), 0.7, 0.3)`
is `tensor([1, -1, -1, 1, 0])`: anchor 3 is object 1's best.""",
    stub='''\
import torch


def anchor_labels(iou, high, low):
    """RPN labels from iou [G, N] (objects x anchors) -> int64 [N]: 1 positive, 0 background, -1 ignored."""
    raise NotImplementedError  # your turn
''',
    hint="""\
`iou.max(dim=0).values` is each anchor's best IoU, `iou.max(dim=1).values` each object's. The anchors
the low-quality rule picks are the columns where `iou == best_per_object[:, None]` holds in any row.""",
)

DECODE_BOXES = Exercise(
    name="decode_boxes",
    chapter="02",
    title="Decoding deltas into boxes",
    task="""\
Write `decode_boxes(deltas, anchors, weights)`: apply `deltas [N, 4]` `(dx, dy, dw, dh)` to
`anchors [N, 4]` and return the boxes `[N, 4]` `(x0, y0, x1, y1)` (section 8). With the anchor's
centre `(xa, ya)` and size `(wa, ha)`, and `weights = (wx, wy, ww, wh)`:

- the centre moves to `x = xa + (dx / wx) wa`, `y = ya + (dy / wy) ha`;
- the size becomes `w = wa exp(dw / ww)`, `h = ha exp(dh / wh)`, where `dw / ww` and `dh / wh` are
  first clamped from above at `log(1000 / 16)` (nothing clamps them from below).

Example: `decode_boxes(torch.tensor([[0.1, -0.2, math.log(2), 0.0]]), torch.tensor([[0., 0., 10., 20.]]),
(1, 1, 1, 1))` is `tensor([[-4., -4., 16., 16.]])`.""",
    stub='''\
import math

import torch


def decode_boxes(deltas, anchors, weights):
    """Boxes [N, 4] from deltas [N, 4] (dx, dy, dw, dh) on anchors [N, 4], weights (wx, wy, ww, wh)."""
    raise NotImplementedError  # your turn
''',
    hint="""\
Work with columns: `anchors[:, 2] - anchors[:, 0]` is `wa`, `anchors[:, 0] + 0.5 * wa` is `xa`. Divide
by the weights before the clamp, and `torch.stack` the four corners along `dim=1`.""",
)


def _iou_cases() -> list[Case]:
    square = [[0, 0, 4, 4]]
    cases = [Case("by hand", (box_rows(square), box_rows([[2, 1, 6, 5]]))),
             Case("touching edges", (box_rows([[0, 0, 2, 2], [1, 1, 3, 3]]), box_rows([[2, 0, 4, 2]]))),
             Case("disjoint", (box_rows(square), box_rows([[5, 6, 8, 9], [-3, -3, -1, -1]]))),
             Case("one inside the other", (box_rows(square), box_rows([[1, 1, 2, 3], [0, 0, 4, 4]]))),
             Case("degenerate box", (box_rows([[1, 1, 1, 3], [0, 0, 4, 4]]), box_rows(square))),
             Case("empty", (box_rows([]), box_rows(square))),
             Case("empty", (box_rows(square), box_rows([])))]
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        boxes1, boxes2 = random_boxes(12, generator), random_boxes(9, generator)
        cases.append(Case("random", (boxes1, boxes2), f"seed {seed}"))
    return cases


def _labels_reference(iou: Tensor, high: float, low: float) -> Tensor:
    labels = torch.zeros(iou.shape[1], dtype=torch.int64)  # no object: every anchor is background
    if iou.shape[0] == 0:
        return labels
    matches = Matcher(high, low, allow_low_quality_matches=True)(iou)
    labels[matches >= 0] = 1
    labels[matches == IGNORE] = IGNORE
    return labels


def _iou(rows) -> Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _labels_cases() -> list[Case]:
    cases = [Case("by hand", (_iou([[0.8, 0.5, 0.1, 0.0, 0.2], [0.1, 0.2, 0.4, 0.6, 0.2]]), 0.7, 0.3)),
             Case("IoU on a threshold", (_iou([[0.7, 0.3, 0.29, 0.69]]), 0.7, 0.3)),
             Case("ties for an object's best", (_iou([[0.5, 0.5, 0.1, 0.2], [0.1, 0.2, 0.4, 0.1]]), 0.7,
                                                0.3)),
             Case("no objects", (torch.zeros(0, 6, dtype=torch.float64), 0.7, 0.3))]
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        iou = (torch.rand(3, 40, generator=generator, dtype=torch.float64) * 0.8).mul(50).round().div(50)
        cases.append(Case("random", (iou, 0.7, 0.3), f"seed {seed}, IoUs in steps of 0.02"))
    return cases


def _decode_reference(deltas: Tensor, anchors: Tensor, weights) -> Tensor:
    return BoxCoder(weights).decode(deltas, anchors)


def _decode_cases() -> list[Case]:
    anchor = box_rows([[0, 0, 10, 20]])
    head = (10.0, 10.0, 5.0, 5.0)
    anchors = box_rows([[0, 0, 10, 20], [-8, 4, 24, 12]])
    cases = [Case("zero deltas", (torch.zeros(2, 4), anchors, (1, 1, 1, 1))),
             Case("by hand", (torch.tensor([[0.1, -0.2, math.log(2), 0.0]]), anchor, (1, 1, 1, 1))),
             Case("by hand", (torch.tensor([[1.0, -2.0, 5 * math.log(2), 0.0]]), anchor, head)),
             Case("wild deltas", (torch.tensor([[0.0, 0.0, 10.0, -10.0]]), anchor, (1, 1, 1, 1))),
             Case("wild deltas", (torch.tensor([[0.0, 0.0, 10.0, 30.0]]), anchor, head)),
             Case("empty", (torch.zeros(0, 4), box_rows([]), head))]
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        anchors = random_boxes(15, generator) + torch.tensor([0.0, 0.0, 2.0, 2.0])
        deltas = torch.randn(15, 4, generator=generator) * 2
        cases.append(Case("random", (deltas, anchors, head if seed else (1, 1, 1, 1)), f"seed {seed}"))
    return cases


EXERCISES = [BOX_IOU, ANCHOR_LABELS, DECODE_BOXES]
CHECKS = {
    "box_iou": Checker(BOX_IOU, box_iou, _iou_cases),
    "anchor_labels": Checker(ANCHOR_LABELS, _labels_reference, _labels_cases, tensors(kind="int")),
    "decode_boxes": Checker(DECODE_BOXES, _decode_reference, _decode_cases, tensors(atol=1e-4, rtol=1e-5)),
}
