"""Worked answers to the chapters' "Your turn" exercises, one function per exercise.

Each is written from scratch in plain PyTorch, the way the chapter explains the idea, without
calling the library function it is checked against. Try the exercise first; then compare. Check
any of them with `maskrcnn_edu.exercises.check`, e.g. `check("box_iou", box_iou)`.
"""
from __future__ import annotations

import math

import torch

# ---------------------------------------------------------------------------------------------
# Chapter 01: RoIPool and RoIAlign
# ---------------------------------------------------------------------------------------------


def bilinear_sample(feature, y, x):
    """The value of feature [C, H, W] at the real point (y, x) -> [C]."""
    channels, height, width = feature.shape
    if y < -1 or y > height or x < -1 or x > width:  # more than one cell outside: nothing to read
        return feature.new_zeros(channels)
    y = min(max(y, 0.0), height - 1)  # the one-cell band around the map reads the border
    x = min(max(x, 0.0), width - 1)
    y_low, x_low = int(y), int(x)
    y_high, x_high = min(y_low + 1, height - 1), min(x_low + 1, width - 1)
    ly, lx = y - y_low, x - x_low  # how far past the low neighbour: its weight is 1 - that
    return ((1 - ly) * (1 - lx) * feature[:, y_low, x_low] + (1 - ly) * lx * feature[:, y_low, x_high]
            + ly * (1 - lx) * feature[:, y_high, x_low] + ly * lx * feature[:, y_high, x_high])


def roi_align_box(feature, box, output_size, spatial_scale, sampling_ratio, aligned):
    """RoIAlign of one box [4] (x0, y0, x1, y1, in pixels) on feature [C, H, W] -> [C, P, P]."""
    offset = 0.5 if aligned else 0.0
    x0, y0, x1, y1 = (float(v) * spatial_scale - offset for v in box)
    width, height = x1 - x0, y1 - y0
    if not aligned:  # the legacy rule: never smaller than one cell
        width, height = max(width, 1.0), max(height, 1.0)
    bin_w, bin_h = width / output_size, height / output_size
    output = feature.new_zeros(feature.shape[0], output_size, output_size)
    for i in range(output_size):
        for j in range(output_size):
            for a in range(sampling_ratio):
                y = y0 + i * bin_h + (a + 0.5) * bin_h / sampling_ratio
                for b in range(sampling_ratio):
                    x = x0 + j * bin_w + (b + 0.5) * bin_w / sampling_ratio
                    output[:, i, j] += bilinear_sample(feature, y, x)
    return output / sampling_ratio**2


def roi_pool_box(feature, box, output_size, spatial_scale):
    """RoIPool of one box [4] (x0, y0, x1, y1, in pixels) on feature [C, H, W] -> [C, P, P]."""
    _, height, width = feature.shape

    def c_round(v):  # halves away from zero, as C's round
        return int(math.copysign(math.floor(abs(v) + 0.5), v))

    x0, y0, x1, y1 = (c_round(float(v) * spatial_scale) for v in box)
    length_x, length_y = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)  # the end cell is inside the box

    def cells(start, length, p, limit):  # bin p's cells along one axis, clipped to 0 .. limit
        first = start + math.floor(p * length / output_size)
        last = start + math.ceil((p + 1) * length / output_size)
        return min(max(first, 0), limit), min(max(last, 0), limit)

    output = feature.new_zeros(feature.shape[0], output_size, output_size)
    for i in range(output_size):
        row_from, row_to = cells(y0, length_y, i, height)
        for j in range(output_size):
            col_from, col_to = cells(x0, length_x, j, width)
            if row_from < row_to and col_from < col_to:  # a bin off the map stays 0
                output[:, i, j] = feature[:, row_from:row_to, col_from:col_to].amax(dim=(1, 2))
    return output


# ---------------------------------------------------------------------------------------------
# Chapter 02: anchors
# ---------------------------------------------------------------------------------------------


def box_iou(boxes1, boxes2):
    """IoU of every pair: boxes1 [N, 4], boxes2 [M, 4] (x0, y0, x1, y1) -> [N, M]."""
    # The intersection is a box too: the larger left/top edge to the smaller right/bottom edge.
    overlap_w = (torch.min(boxes1[:, None, 2], boxes2[None, :, 2])
                 - torch.max(boxes1[:, None, 0], boxes2[None, :, 0])).clamp(min=0)  # [N, M]
    overlap_h = (torch.min(boxes1[:, None, 3], boxes2[None, :, 3])
                 - torch.max(boxes1[:, None, 1], boxes2[None, :, 1])).clamp(min=0)
    intersection = overlap_w * overlap_h
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # [N]
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # [M]
    return intersection / (area1[:, None] + area2[None, :] - intersection)  # the overlap counted once


def anchor_labels(iou, high, low):
    """RPN labels from iou [G, N] (objects x anchors) -> int64 [N]: 1 positive, 0 background, -1 ignored."""
    labels = torch.zeros(iou.shape[1], dtype=torch.int64)
    if len(iou) == 0:  # no objects: all background
        return labels
    best_per_anchor = iou.max(dim=0).values  # [N]
    labels[best_per_anchor >= high] = 1
    labels[(best_per_anchor >= low) & (best_per_anchor < high)] = -1
    # The low-quality rule: every object's best anchor(s) are positive, whatever their IoU.
    best_per_object = iou.max(dim=1).values  # [G]
    labels[(iou == best_per_object[:, None]).any(dim=0)] = 1
    return labels


def decode_boxes(deltas, anchors, weights):
    """Boxes [N, 4] from deltas [N, 4] (dx, dy, dw, dh) on anchors [N, 4], weights (wx, wy, ww, wh)."""
    wx, wy, ww, wh = weights
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    centre_x, centre_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    clamp = math.log(1000 / 16)  # no box grows more than 62.5 times per side
    x = centre_x + deltas[:, 0] / wx * widths
    y = centre_y + deltas[:, 1] / wy * heights
    w = widths * torch.exp((deltas[:, 2] / ww).clamp(max=clamp))
    h = heights * torch.exp((deltas[:, 3] / wh).clamp(max=clamp))
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=1)


# ---------------------------------------------------------------------------------------------
# Chapter 03: the region proposal network
# ---------------------------------------------------------------------------------------------


def greedy_nms(boxes, scores, threshold):
    """Indices int64 [K] of the boxes [N, 4] that greedy NMS keeps, best score first (scores [N])."""
    order = torch.sort(scores, descending=True, stable=True).indices  # ties: the lower index first
    overlaps = box_iou(boxes, boxes)  # [N, N]
    kept = []
    for i in order.tolist():
        if all(overlaps[i, j] <= threshold for j in kept):  # only boxes already kept suppress
            kept.append(i)
    return torch.tensor(kept, dtype=torch.int64)


def level_top_k(scores, level_sizes, k):
    """Indices int64 [T] of the k best scores [A] of each level (level_sizes: anchors per level)."""
    indices, offset = [], 0
    for level_scores in scores.split(level_sizes):
        best = level_scores.topk(min(k, len(level_scores))).indices  # counted from the level's start
        indices.append(best + offset)
        offset += len(level_scores)
    return torch.cat(indices)


def objects_found(boxes, objects, threshold):
    """For each of objects [K, 4]: does a box of boxes [B, 4] reach IoU >= threshold? -> bool [K]."""
    if len(boxes) == 0:
        return torch.zeros(len(objects), dtype=torch.bool)
    return box_iou(objects, boxes).max(dim=1).values >= threshold


# ---------------------------------------------------------------------------------------------
# Chapter 04: the heads
# ---------------------------------------------------------------------------------------------


def fpn_level(boxes, canonical_size):
    """The FPN level (2..5) of each of boxes [K, 4] -> int64 [K]."""
    sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))  # sqrt(w h)
    levels = torch.floor(4 + torch.log2(sizes / canonical_size))  # a box of no area: -inf
    return levels.clamp(min=2, max=5).to(torch.int64)


def class_nms(boxes, scores, labels, threshold):
    """Indices int64 [K] kept by NMS within each class (labels [N]) of boxes [N, 4], best score first."""
    kept = [torch.zeros(0, dtype=torch.int64)]
    for label in labels.unique():
        members = torch.where(labels == label)[0]  # this class's boxes, as indices into all of them
        kept.append(members[greedy_nms(boxes[members], scores[members], threshold)])
    kept = torch.cat(kept).sort().values  # index order, so that the stable sort below breaks ties by index
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


# ---------------------------------------------------------------------------------------------
# Chapter 05: the losses
# ---------------------------------------------------------------------------------------------


def smooth_l1(prediction, target, beta):
    """Summed smooth L1 of prediction - target (same shape, any) -> 0-dim tensor."""
    x = (prediction - target).abs()
    # Quadratic near zero (a gentle pull on boxes already close), linear beyond beta.
    return torch.where(x < beta, 0.5 * x**2 / beta, x - 0.5 * beta).sum()


def box_loss(box_deltas, labels, target_deltas):
    """Smooth L1 (beta 1/9) of the own-class deltas of the positives / all RoIs -> 0-dim tensor.

    box_deltas [R, K * 4], labels [R] (0: background), target_deltas [R, 4].
    """
    positive = torch.where(labels > 0)[0]
    per_class = box_deltas.reshape(len(box_deltas), -1, 4)  # [R, K, 4]
    own_class = per_class[positive, labels[positive]]  # [P, 4]
    return smooth_l1(own_class, target_deltas[positive], 1 / 9) / len(labels)  # over all sampled RoIs


def mask_loss(mask_logits, labels, mask_targets):
    """Mean sigmoid BCE of each RoI's own-class mask: [P, K, M, M], [P], [P, M, M] -> 0-dim tensor."""
    if len(labels) == 0:
        return mask_logits.sum() * 0  # no positive RoI: zero
    own_class = mask_logits[torch.arange(len(labels)), labels]  # [P, M, M]: the other classes get no loss
    return torch.nn.functional.binary_cross_entropy_with_logits(own_class, mask_targets)


# ---------------------------------------------------------------------------------------------
# Chapter 06: data
# ---------------------------------------------------------------------------------------------


def tight_boxes(masks):
    """The tight box (x0, y0, x1, y1) of each of masks [N, H, W] -> float [N, 4]."""
    boxes = []
    for mask in masks:
        rows = torch.where(mask.any(dim=1))[0]  # the rows that hold the object
        cols = torch.where(mask.any(dim=0))[0]
        # Pixel (i, j) is the square [j, j + 1] x [i, i + 1]: the box ends one past the last pixel.
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def hflip_sample(image, target):
    """Mirror image [C, H, W] and target {boxes [N, 4], labels [N], masks [N, H, W]} left to right."""
    width = image.shape[-1]
    boxes = target["boxes"]
    # The left edge x0 moves to W - x0 and becomes the right edge; the right edge becomes the left one.
    flipped = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    return image.flip(-1), {**target, "boxes": flipped, "masks": target["masks"].flip(-1)}


def resized_size(height, width, min_size, max_size):
    """(height, width) of an image of that size after the resize to min_size / max_size -> (int, int)."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return math.floor(height * scale), math.floor(width * scale)


# ---------------------------------------------------------------------------------------------
# Chapter 07: the training loop
# ---------------------------------------------------------------------------------------------


def cosine_lr_factor(step, warmup_steps, steps, warmup_factor):
    """The multiplier of the base lr at step: linear warm-up, then a half cosine to 0 at steps."""
    if step < warmup_steps:
        alpha = step / warmup_steps
        return warmup_factor * (1 - alpha) + alpha
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)  # 0 at the end of the warm-up
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def step_lr_factor(step, warmup_steps, warmup_factor, milestones, gamma):
    """The multiplier of the base lr at step: linear warm-up, then x gamma at each milestone reached."""
    if step < warmup_steps:
        alpha = step / warmup_steps
        return warmup_factor * (1 - alpha) + alpha
    return gamma ** sum(step >= milestone for milestone in milestones)


def clip_gradients(gradients, max_norm):
    """Scale the gradients (a list of tensors) so their total norm is at most max_norm -> (list, norm)."""
    total = float(sum(g.double().pow(2).sum() for g in gradients)) ** 0.5  # one norm over all of them
    factor = min(1.0, max_norm / total) if total > 0 else 1.0
    return [g * factor for g in gradients], total


# ---------------------------------------------------------------------------------------------
# Chapter 08: evaluation
# ---------------------------------------------------------------------------------------------


def match_detections(ious, threshold):
    """The object each detection takes (or -1), greedily in order: ious [D, G] -> int64 [D]."""
    num_detections, num_objects = ious.shape
    taken = torch.zeros(num_objects, dtype=torch.bool)
    matches = torch.full((num_detections,), -1, dtype=torch.int64)
    for d in range(num_detections):
        candidates = torch.where(taken | (ious[d] < threshold), -1.0, ious[d])  # [G]: -1 = not available
        if num_objects == 0 or candidates.max() < 0:
            continue  # a false positive
        best = num_objects - 1 - int(candidates.flip(0).argmax())  # of equal overlaps, the later object
        matches[d] = best
        taken[best] = True
    return matches


def precision_recall(is_true_positive, num_ground_truth):
    """Precision and recall [D] after each detection of a ranked list is_true_positive [D] (bool)."""
    true_positives = torch.cumsum(is_true_positive.double(), dim=0)  # right so far
    ranks = torch.arange(1, len(is_true_positive) + 1, dtype=torch.float64)  # detections so far
    return true_positives / ranks, true_positives / num_ground_truth


def average_precision(is_true_positive, num_ground_truth):
    """COCO's 101-point interpolated AP of a ranked list is_true_positive [D] (bool) -> float."""
    precision, recall = precision_recall(is_true_positive, num_ground_truth)
    if len(precision) == 0:
        return 0.0
    envelope = precision.flip(0).cummax(dim=0).values.flip(0)  # the best precision from here down
    levels = torch.linspace(0, 1, 101, dtype=torch.float64)
    first = torch.searchsorted(recall, levels)  # the first point whose recall reaches each level
    reached = first < len(recall)
    return float(torch.where(reached, envelope[first.clamp(max=len(recall) - 1)], 0.0).mean())
