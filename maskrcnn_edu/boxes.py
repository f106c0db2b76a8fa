"""Boxes: areas, overlaps, the delta encoding that regressors learn, and non-maximum suppression.

Convention (the whole package keeps it, as torchvision does): a box is ``(x0, y0, x1, y1)`` in
continuous pixel coordinates, where pixel ``(i, j)`` is the unit square ``[j, j+1] x [i, i+1]``.
Width is ``x1 - x0`` (no "+1" as in the old Fast R-CNN code).

Every function is plain, vectorized PyTorch; chapters 2 and 3 show them, and the tests hold
each one to its ``torchvision.ops`` twin.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_iou",
    "BoxCoder",
    "clip_boxes_to_image",
    "remove_small_boxes",
    "nms",
    "batched_nms",
    "masks_to_boxes",
]

# dw, dh are clamped before exp() so that one wild regression cannot make a box of infinite size:
# a box may grow at most 1000/16 = 62.5 times per side (torchvision's and Detectron's value).
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)
# batched_nms handles up to this many boxes in one [N, N] IoU matrix, more with one matrix per
# category: the joint matrix's work grows as N^2, and past ~300 boxes (on a CPU) several smaller
# matrices cost less than one big one (the RPN's 838 candidates in 5 levels: 5.6 ms -> 1.9 ms).
MAX_JOINT_NMS = 300


def check_boxes(boxes: Tensor, name: str = "boxes") -> Tensor:
    """Raise ``ValueError`` unless ``boxes`` is a ``[N, 4]`` tensor; return it."""
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"{name} must be a [N, 4] tensor of (x0, y0, x1, y1), got shape {got}")
    return boxes


def _widened(boxes: Tensor) -> Tensor:
    """``boxes`` in a dtype in which a width times a height cannot overflow.

    float16's largest value is 65504, less than a 256 x 256 box's area; int8, uint8 and int16 wrap
    around past 127, 255 and 32767. So float16/bfloat16 -> float32 and every integer dtype -> int64
    (torchvision's ``_upcast`` stops at int32); float32 and float64 pass through unchanged.
    """
    if boxes.is_floating_point():
        return boxes.float() if boxes.dtype in (torch.float16, torch.bfloat16) else boxes
    return boxes.long()


def box_area(boxes: Tensor) -> Tensor:
    """Areas of ``boxes [N, 4]`` -> ``[N]``: float32 for float16/bfloat16 boxes, int64 for integer ones."""
    check_boxes(boxes)
    boxes = _widened(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: ``boxes1 [N, 4]``, ``boxes2 [M, 4]`` -> ``[N, M]``.

    Computed in float32 for float16/bfloat16 boxes and in int64 for integer ones (``_widened``); the
    result is float64 for float64 boxes, else float32 (as torchvision's).
    """
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    boxes1, boxes2 = _widened(boxes1), _widened(boxes2)
    # Overlap along each axis, [N, M]: how far the smaller right edge is past the larger left edge.
    overlap_x = (torch.min(boxes1[:, None, 2], boxes2[None, :, 2])
                 - torch.max(boxes1[:, None, 0], boxes2[None, :, 0]))
    overlap_y = (torch.min(boxes1[:, None, 3], boxes2[None, :, 3])
                 - torch.max(boxes1[:, None, 1], boxes2[None, :, 1]))
    intersection = overlap_x.clamp(min=0) * overlap_y.clamp(min=0)  # 0 where disjoint
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - intersection
    return intersection / union  # integer / integer divides to float32


def _centres_and_sizes(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``boxes [..., 4]`` -> centre x, centre y, width, height, each ``[...]``."""
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights


class BoxCoder:
    """Encode a box relative to a reference box (an anchor or a proposal) as four deltas, and back.

    ``dx = wx (x - xa) / wa``, ``dy = wy (y - ya) / ha``, ``dw = ww log(w / wa)``,
    ``dh = wh log(h / ha)``, with ``(x, y)`` centres and ``(w, h)`` sizes. The weights scale the
    deltas to unit-ish variance: ``(1, 1, 1, 1)`` for the RPN, ``(10, 10, 5, 5)`` for the box head.
    Decoding clamps ``dw, dh`` at ``scale_clamp`` (default ``log(1000/16)``).

    Both directions work on the last dimension and broadcast the rest, so class-specific deltas
    ``[N, K, 4]`` decode against proposals ``[N, 1, 4]``.
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 scale_clamp: float = DEFAULT_SCALE_CLAMP):
        if len(weights) != 4:
            raise ValueError(f"weights must have 4 entries (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = float(scale_clamp)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, scale_clamp={self.scale_clamp:.4f})"

    def encode(self, boxes: Tensor, reference: Tensor) -> Tensor:
        """Deltas that move ``reference [..., 4]`` onto ``boxes [..., 4]`` -> ``[..., 4]``."""
        wx, wy, ww, wh = self.weights
        x, y, w, h = _centres_and_sizes(boxes)
        xa, ya, wa, ha = _centres_and_sizes(reference)
        return torch.stack(
            [wx * (x - xa) / wa, wy * (y - ya) / ha, ww * torch.log(w / wa), wh * torch.log(h / ha)],
            dim=-1,
        )

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Apply ``deltas [..., 4]`` to ``reference [..., 4]`` -> boxes ``[..., 4]``."""
        wx, wy, ww, wh = self.weights
        reference = reference.to(deltas.dtype)
        xa, ya, wa, ha = _centres_and_sizes(reference)
        dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.scale_clamp)
        x, y = xa + dx * wa, ya + dy * ha
        half_w, half_h = 0.5 * torch.exp(dw) * wa, 0.5 * torch.exp(dh) * ha
        return torch.stack([x - half_w, y - half_h, x + half_w, y + half_h], dim=-1)


def clip_boxes_to_image(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clamp ``boxes [..., 4]`` to an image of ``image_size = (height, width)``."""
    height, width = image_size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices ``[K]`` of the ``boxes [N, 4]`` whose width and height are both >= ``min_size``."""
    check_boxes(boxes)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((widths >= min_size) & (heights >= min_size))[0]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression -> indices ``[K]`` of the kept boxes, best score first.

    ``boxes [N, 4]``, ``scores [N]``; of two equal scores, the lower index comes first. Greedy NMS
    visits boxes from the best score down and keeps a box unless it overlaps (IoU >
    ``iou_threshold``) a box already kept. Written as a loop that is one box at a time. Here it is
    a fixed point instead (``_greedy_keep``).
    """
    check_boxes(boxes)
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must be [N] with N = {boxes.shape[0]}, got shape {tuple(scores.shape)}")
    order = _best_first(scores)
    return order[_greedy_keep(_float32(boxes)[order], iou_threshold)]


def _best_first(scores: Tensor) -> Tensor:
    """The order ``[N]`` that visits ``scores [N]`` from the best down, equal scores by lower index.

    Greedy NMS keeps the first of two overlapping boxes it visits, so the order among tied scores
    decides which one survives; float16/bfloat16 scores (under autocast) tie often. A plain argsort
    orders ties arbitrarily; a stable sort keeps the lower index first, as torchvision's kernel does.
    """
    return torch.sort(scores, descending=True, stable=True).indices


def _float32(boxes: Tensor) -> Tensor:
    """float16/bfloat16 boxes (under autocast, the RPN's) as float32, for NMS: an IoU needs more than
    bfloat16's 8 bits, and batched_nms's offsets push coordinates into the thousands, where a
    bfloat16 can only hold multiples of 8. Wider dtypes pass through unchanged."""
    return boxes.float() if boxes.dtype in (torch.float16, torch.bfloat16) else boxes


def _greedy_keep(sorted_boxes: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS on ``sorted_boxes [N, 4]``, best first -> ``keep [N]`` (bool).

    With boxes sorted, box ``i`` is kept exactly when no *kept* box ``j < i`` overlaps it. Start by
    keeping everything and re-apply that rule to all boxes at once; after round ``t`` the first
    ``t`` decisions are final, and in practice the decisions stop changing after a handful of
    rounds (the length of the longest chain "a suppresses b, which would have suppressed c ...").
    Each round is one vectorized pass over an ``[N, N]`` matrix.
    """
    # overlaps[i, j]: box j is better than box i and overlaps it too much.
    overlaps = torch.tril(box_iou(sorted_boxes, sorted_boxes) > iou_threshold, diagonal=-1)
    keep = torch.ones(len(sorted_boxes), dtype=torch.bool, device=sorted_boxes.device)
    while True:
        new_keep = ~(overlaps & keep[None, :]).any(dim=1)
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def batched_nms(boxes: Tensor, scores: Tensor, categories: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category: ``boxes [N, 4]``, ``scores [N]``, ``categories [N]`` -> ``[K]``.

    Boxes of different categories must never suppress each other. Shifting each category's boxes
    by its own offset, a multiple of the span of all coordinates, puts the categories in disjoint
    parts of the plane; one NMS over the shifted boxes then is NMS per category. That NMS builds an
    ``[N, N]`` matrix, so beyond ``MAX_JOINT_NMS`` boxes it runs once per category instead, on
    ``[n_c, n_c]`` matrices that hold far fewer pairs (a loop over categories, never over boxes). The
    boxes are sorted by score once (stably), before either way, so both visit tied scores in the same
    order and keep the same boxes. Returns indices sorted by decreasing score, ties by index.
    """
    check_boxes(boxes)
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = _best_first(scores)
    boxes, categories = _float32(boxes)[order], categories[order]
    if len(boxes) <= MAX_JOINT_NMS:
        # Category c moves by c times the span of all coordinates (plus 1 pixel of gap), so it lies
        # wholly beyond category c - 1 wherever the boxes are. torchvision's c * (max + 1) is that span
        # only while no coordinate is negative (all <= 0: it moves the boxes by 1 pixel or less). Where
        # none is, the offsets are torchvision's to the bit, so the shifted boxes round alike.
        span = boxes.max() + 1 - boxes.min().clamp(max=0)
        offsets = categories.to(boxes) * span
        return order[_greedy_keep(boxes + offsets[:, None], iou_threshold)]
    keep = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    for category in torch.unique(categories):
        members = torch.where(categories == category)[0]  # still best first
        keep[members] = _greedy_keep(boxes[members], iou_threshold)
    # The survivors, best first. Within a category NMS visited tied scores by index (torchvision's kernel
    # does too); across categories torchvision's per-category path orders its survivors with a sort that
    # is not stable, so tied scores of different categories come out in that sort's order. The same
    # call here gives the same order, which keeps the model's proposals equal to torchvision's.
    kept = torch.sort(order[keep]).values  # by index, as torchvision's torch.where gives them
    return kept[scores[kept].sort(descending=True).indices]


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Boxes around the non-zero pixels of ``masks [N, H, W]`` -> ``[N, 4]``.

    As ``torchvision.ops.masks_to_boxes``, the box runs from the first to the last non-zero pixel
    *index* (``x1 = last column``, not ``last column + 1``). An empty mask gives a zero box.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
    n, height, width = masks.shape
    if n == 0:
        return torch.zeros((0, 4), device=masks.device, dtype=torch.float)
    rows = (masks != 0).any(dim=2)  # [N, H]: which rows hold the object
    cols = (masks != 0).any(dim=1)  # [N, W]
    # argmax on a boolean returns the first True: the first from the front and from the back.
    y0 = rows.int().argmax(dim=1)
    y1 = height - 1 - rows.flip(1).int().argmax(dim=1)
    x0 = cols.int().argmax(dim=1)
    x1 = width - 1 - cols.flip(1).int().argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return boxes * rows.any(dim=1, keepdim=True)  # empty masks -> zero boxes
