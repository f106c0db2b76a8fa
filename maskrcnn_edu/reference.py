"""Slow, obvious loop versions of the library's vectorized ops: read these first.

The library computes every op on all boxes (bins, pixels, anchors) at once, as tensor algebra:
fast, but the idea hides behind broadcasting and index arithmetic. This module writes the same
ops the way you would explain them on a whiteboard: a Python loop over boxes, over bins, over
sampling points, with each formula spelled out. The chapters show a loop from here first, then
its fast twin; the tests (``tests/test_reference.py``) hold every loop equal to its twin and to
torchvision, so the simple version is also the specification of the fast one.

| loop here            | fast twin                             |
|----------------------|---------------------------------------|
| ``box_iou_loop``     | ``maskrcnn_edu.boxes.box_iou``        |
| ``nms_loop``         | ``maskrcnn_edu.boxes.nms``            |
| ``roi_align_loop``   | ``maskrcnn_edu.roi_ops.roi_align``    |
| ``roi_pool_loop``    | ``maskrcnn_edu.roi_ops.roi_pool``     |
| ``paste_masks_loop`` | ``maskrcnn_edu.masks.paste_masks``|
| ``rescore_by_mask_overlap_loop`` | ``maskrcnn_edu.masks.rescore_by_mask_overlap`` |
| ``match_loop``       | ``maskrcnn_edu.matching.Matcher``     |

Correctness and readability come before speed: use these on a handful of boxes, never in training.
Boxes are ``(x0, y0, x1, y1)`` in continuous pixel coordinates, as everywhere in the package.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .matching import BACKGROUND, IGNORE

__all__ = ["box_iou_loop", "nms_loop", "bilinear", "roi_align_loop", "roi_pool_loop", "paste_masks_loop",
           "rescore_by_mask_overlap_loop", "match_loop"]


# ---------------------------------------------------------------------------------------------
# Boxes: IoU and NMS
# ---------------------------------------------------------------------------------------------


def _iou(a: list[float], b: list[float]) -> float:
    """IoU of two boxes given as ``[x0, y0, x1, y1]`` lists."""
    # The intersection is a box too: the larger left/top edge to the smaller right/bottom edge.
    overlap_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    overlap_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = overlap_w * overlap_h
    # union = area(a) + area(b) - intersection (the overlap was counted twice)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union != 0 else math.nan  # two empty boxes: 0/0, as the fast version


def box_iou_loop(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair, one pair at a time: ``boxes1 [N, 4]``, ``boxes2 [M, 4]`` -> ``[N, M]``."""
    # IoUs are fractions: float64 if either argument is, else float32 (for integer and 16-bit boxes too,
    # as the fast twin). The arithmetic is on Python numbers, which never overflow.
    dtype = torch.float64 if torch.float64 in (boxes1.dtype, boxes2.dtype) else torch.float32
    iou = torch.zeros(len(boxes1), len(boxes2), dtype=dtype)
    for i, a in enumerate(boxes1.tolist()):
        for j, b in enumerate(boxes2.tolist()):
            iou[i, j] = _iou(a, b)
    return iou


def nms_loop(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression -> indices ``int64 [K]`` of the kept boxes, best score first.

    ``boxes [N, 4]``, ``scores [N]``. Repeat: keep the best remaining box, then drop every remaining
    box that overlaps it with IoU > ``iou_threshold``; stop when none remain.
    """
    box_list = boxes.tolist()
    remaining = sorted(range(len(box_list)), key=lambda i: scores[i].item(), reverse=True)
    kept = []
    while remaining:
        best = remaining.pop(0)  # the best score still in play is never suppressed
        kept.append(best)
        remaining = [i for i in remaining if _iou(box_list[best], box_list[i]) <= iou_threshold]
    return torch.tensor(kept, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# RoIAlign and RoIPool
# ---------------------------------------------------------------------------------------------


def _output_hw(output_size) -> tuple[int, int]:
    """``7`` or ``(7, 7)`` -> ``(height, width)``."""
    return (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)


def bilinear(feature: Tensor, y: float, x: float) -> Tensor:
    """The value of ``feature [C, H, W]`` at the real point ``(y, x)`` -> ``[C]``.

    Cell ``(i, j)`` holds the value *at* the point ``(y=i, x=j)``. Between cells, interpolate
    linearly along x and along y from the 4 neighbouring cells.
    """
    channels, height, width = feature.shape
    # Border rule 1: a point more than one cell outside the map reads nothing.
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return feature.new_zeros(channels)
    # Border rule 2: a point in the one-cell band around the map reads the border: clamp into
    # [0, H-1] x [0, W-1].
    y = min(max(y, 0.0), height - 1)
    x = min(max(x, 0.0), width - 1)
    # The 4 neighbours: rows y_low, y_high and columns x_low, x_high (on the last row or column
    # both neighbours are that row or column).
    y_low, x_low = int(y), int(x)  # floor, as y, x >= 0
    y_high, x_high = min(y_low + 1, height - 1), min(x_low + 1, width - 1)
    # Weights: the nearer a neighbour, the larger its share; the 4 weights sum to 1.
    #   value = (1-ly)(1-lx) f[y_low, x_low] + (1-ly) lx f[y_low, x_high]
    #         +  ly  (1-lx) f[y_high, x_low] +  ly  lx f[y_high, x_high]
    ly, lx = y - y_low, x - x_low
    return (
        (1 - ly) * (1 - lx) * feature[:, y_low, x_low]
        + (1 - ly) * lx * feature[:, y_low, x_high]
        + ly * (1 - lx) * feature[:, y_high, x_low]
        + ly * lx * feature[:, y_high, x_high]
    )


# One piece: the loop twin of ``roi_align`` is read top to bottom, box -> bin -> sampling point.
def roi_align_loop(input: Tensor, rois: Tensor, output_size: int | tuple[int, int],
                   spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign, one box, one bin, one sampling point at a time -> ``[K, C, PH, PW]``.

    Args:
        input: feature map ``[N, C, H, W]``.
        rois: ``[K, 5]`` rows ``(batch index, x0, y0, x1, y1)`` in image pixels.
        output_size: ``PH`` = ``PW`` as an int, or ``(PH, PW)``.
        spatial_scale: feature cells per image pixel (1 / stride).
        sampling_ratio: sampling points per bin along each axis; ``<= 0``: ``ceil(bin size)``.
        aligned: shift the box by -0.5 cell, so that a pixel's extent ``[j, j+1]`` lines up with
            the cell centred at ``j + 0.5``.

    The coordinates are Python floats (float64), so the result agrees with the float32 kernels to
    about 1e-6, not bit for bit.
    """
    out_h, out_w = _output_hw(output_size)
    output = input.new_zeros(len(rois), input.shape[1], out_h, out_w)
    offset = 0.5 if aligned else 0.0
    for k, (image, x0, y0, x1, y1) in enumerate(rois.tolist()):
        feature = input[int(image)]  # [C, H, W]
        # The box on the feature map: start = x0 * scale - offset, size = end - start.
        start_x, start_y = x0 * spatial_scale - offset, y0 * spatial_scale - offset
        roi_w = (x1 * spatial_scale - offset) - start_x
        roi_h = (y1 * spatial_scale - offset) - start_y
        if not aligned:  # the legacy rule: a box is never smaller than one cell
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_w, bin_h = roi_w / out_w, roi_h / out_h
        # Points per bin along each axis: given, or adaptive = ceil(bin size) (0 for an empty box).
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_w)
        count = max(grid_h * grid_w, 1)
        for i in range(out_h):
            for j in range(out_w):
                total = input.new_zeros(input.shape[1])
                for a in range(grid_h):
                    # Point a of bin i: the centre of the a-th of grid_h equal slices of the bin.
                    y = start_y + i * bin_h + (a + 0.5) * bin_h / grid_h
                    for b in range(grid_w):
                        x = start_x + j * bin_w + (b + 0.5) * bin_w / grid_w
                        total += bilinear(feature, y, x)
                output[k, :, i, j] = total / count  # the bin is the average of its points
    return output


def _round_half_away(x: float) -> int:
    """C's ``round``: 2.5 -> 3, -2.5 -> -3 (Python's ``round`` sends halves to the even integer)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def roi_pool_loop(input: Tensor, rois: Tensor, output_size: int | tuple[int, int],
                  spatial_scale: float = 1.0) -> Tensor:
    """RoIPool (Fast R-CNN), one box and one bin at a time -> ``[K, C, PH, PW]``.

    Args are as ``roi_align_loop``'s. Two quantizations: the box is rounded to whole cells, then
    bin ``p`` covers the whole cells ``floor(p L / P)`` to ``ceil((p + 1) L / P)`` (exclusive) of
    a box ``L`` cells long. Each bin outputs the max over its cells on the map, or 0 if it has none.
    """
    out_h, out_w = _output_hw(output_size)
    _, channels, height, width = input.shape
    output = input.new_zeros(len(rois), channels, out_h, out_w)
    for k, (image, x0, y0, x1, y1) in enumerate(rois.tolist()):
        feature = input[int(image)]  # [C, H, W]
        # Quantization 1: the box to whole cells, both ends included (cells 3..5 are 3 cells).
        start_x, start_y = _round_half_away(x0 * spatial_scale), _round_half_away(y0 * spatial_scale)
        end_x, end_y = _round_half_away(x1 * spatial_scale), _round_half_away(y1 * spatial_scale)
        roi_w, roi_h = max(end_x - start_x + 1, 1), max(end_y - start_y + 1, 1)
        # Quantization 2: the bin size L / P in float32, as the fast version and torchvision's
        # kernel compute it: the floor/ceil below then agree on every rounding edge.
        bin_h = torch.tensor(roi_h, dtype=torch.float32) / out_h
        bin_w = torch.tensor(roi_w, dtype=torch.float32) / out_w
        for i in range(out_h):
            # Rows floor(i * bin) .. ceil((i+1) * bin) of the box, clipped to the map's 0..H.
            row_from = min(max(math.floor(i * bin_h) + start_y, 0), height)
            row_to = min(max(math.ceil((i + 1) * bin_h) + start_y, 0), height)
            for j in range(out_w):
                col_from = min(max(math.floor(j * bin_w) + start_x, 0), width)
                col_to = min(max(math.ceil((j + 1) * bin_w) + start_x, 0), width)
                if row_to <= row_from or col_to <= col_from:
                    continue  # an empty bin (off the map) outputs 0
                cells = feature[:, row_from:row_to, col_from:col_to]  # [C, h, w]
                output[k, :, i, j] = cells.amax(dim=(1, 2))
    return output


# ---------------------------------------------------------------------------------------------
# Pasting masks into the image
# ---------------------------------------------------------------------------------------------


def paste_masks_loop(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int = 1) -> Tensor:
    """Paste mask probabilities ``[N, 1, M, M]`` into their ``boxes [N, 4]``, one mask at a time.

    Returns ``[N, 1, H, W]`` for ``image_size = (H, W)``: zero outside each box.
    """
    height, width = image_size
    size = masks.shape[-1]
    output = masks.new_zeros(len(masks), 1, height, width)
    # Padding the M x M mask with zero cells makes it (M + 2p) cells wide; the box grows by the
    # same ratio about its centre, so each cell keeps its place and the mask fades out at the edge.
    scale = (size + 2 * padding) / size
    for n in range(len(masks)):
        mask = F.pad(masks[n, 0], (padding,) * 4)  # [M + 2p, M + 2p]
        x0, y0, x1, y1 = boxes[n]  # 0-dim tensors: the arithmetic stays in the boxes' dtype
        centre_x, centre_y = (x1 + x0) * 0.5, (y1 + y0) * 0.5
        half_w, half_h = (x1 - x0) * 0.5 * scale, (y1 - y0) * 0.5 * scale
        # The grown box in whole pixels: int() truncates toward zero (as .to(torch.int64)), and the
        # end pixel is included, so the box covers right - left + 1 pixels.
        left, top = int(centre_x - half_w), int(centre_y - half_h)
        right, bottom = int(centre_x + half_w), int(centre_y + half_h)
        box_w, box_h = max(right - left + 1, 1), max(bottom - top + 1, 1)
        resized = F.interpolate(mask[None, None], size=(box_h, box_w), mode="bilinear",
                                align_corners=False)[0, 0]
        # Write it at (top, left), keeping only the part inside the image.
        row_from, row_to = max(top, 0), min(top + box_h, height)
        col_from, col_to = max(left, 0), min(left + box_w, width)
        if row_from < row_to and col_from < col_to:
            output[n, 0, row_from:row_to, col_from:col_to] = resized[
                row_from - top : row_to - top, col_from - left : col_to - left
            ]
    return output


def rescore_by_mask_overlap_loop(scores: Tensor, masks: Tensor, mask_threshold: float = 0.5) -> Tensor:
    """New scores ``[D]`` for detections ``scores [D]`` (best first) with pasted ``masks [D, 1, H, W]``.

    Walk the detections best first, keeping the pixels claimed so far. Each detection loses the
    share of its own pixels that are already claimed, then adds its pixels to the claimed ones.
    (The twin also re-sorts the detections by the new scores; this returns them in input order.)
    """
    claimed = torch.zeros(masks.shape[-2:], dtype=torch.bool)
    new_scores = scores.clone()
    for k in range(len(scores)):
        mine = masks[k, 0] > mask_threshold
        area = int(mine.sum())
        if area:
            already = int((mine & claimed).sum())
            new_scores[k] = scores[k] * (1 - already / area)
        claimed |= mine
    return new_scores


# ---------------------------------------------------------------------------------------------
# Matching anchors to objects
# ---------------------------------------------------------------------------------------------


def match_loop(
    iou: Tensor, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False
) -> Tensor:
    """Each anchor's object: ``iou [G, N]`` (objects x anchors) -> ``int64 [N]``.

    An anchor gets its best object if that IoU is >= ``high_threshold``, ``BACKGROUND`` if it is
    < ``low_threshold``, ``IGNORE`` in between. With ``allow_low_quality_matches``, every anchor
    that reaches some object's best IoU (ties included) gets its own best object back.
    """
    num_objects, num_anchors = iou.shape
    values = iou.tolist()
    best_object = []  # per anchor: the object it overlaps most (the first one on ties)
    matches = []
    for n in range(num_anchors):
        best = 0
        for g in range(1, num_objects):
            if values[g][n] > values[best][n]:
                best = g
        best_object.append(best)
        best_iou = values[best][n]
        if best_iou >= high_threshold:
            matches.append(best)
        elif best_iou < low_threshold:
            matches.append(BACKGROUND)
        else:
            matches.append(IGNORE)
    if allow_low_quality_matches:
        # Otherwise an object that no anchor overlaps well would have no positive anchor at all.
        for g in range(num_objects):
            best_for_object = max(values[g])
            for n in range(num_anchors):
                if values[g][n] == best_for_object:
                    matches[n] = best_object[n]  # its own best object, not necessarily g
    return torch.tensor(matches, dtype=torch.int64)
