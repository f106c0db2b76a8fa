"""Matching anchors (or proposals) to ground-truth boxes, and sampling a balanced minibatch of them.

``Matcher`` turns an IoU matrix into one decision per anchor: the index of its object, or
``BACKGROUND`` (IoU below the low threshold), or ``IGNORE`` (in between: neither a good positive
nor a clean negative). ``BalancedSampler`` then draws a fixed number of anchors per image with at
most a given fraction of positives, so that the abundant background does not drown the few
objects in the loss.

One convention for the whole package, in match results and in label tensors alike:

* ``IGNORE = -1``: left out of the loss (a match result, and a label of the RPN and the box head);
* ``BACKGROUND = -2``: a match result only, "no object"; as a *label* the background is the
  class ``BACKGROUND_LABEL = 0``, which the box head's classifier predicts like any other class;
* a label ``>= 1`` is a positive: the object's class (the RPN, which knows no classes, uses 1).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Matcher", "BalancedSampler", "BACKGROUND", "IGNORE", "BACKGROUND_LABEL"]

IGNORE = -1  # neither positive nor negative: no loss (match results and labels)
BACKGROUND = -2  # match result: best IoU below the low threshold
BACKGROUND_LABEL = 0  # the label (class) of a background anchor or RoI


class Matcher:
    """Assign every column (anchor) of an IoU matrix to its best row (object) or to a verdict.

    Args:
        high_threshold: IoU at or above which an anchor is positive.
        low_threshold: IoU below which an anchor is background; in between it is ignored.
        allow_low_quality_matches: also make positive, for every object, the anchor(s) that overlap
            it best, even below ``high_threshold``, so that no object is left without an anchor
            (the RPN uses it; the box head does not).
    """

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False):
        if low_threshold > high_threshold:
            raise ValueError(f"low_threshold {low_threshold} must not exceed high_threshold {high_threshold}")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: Tensor) -> Tensor:
        """``iou [G, N]`` (objects x anchors) -> ``[N]``: object index, ``BACKGROUND`` or ``IGNORE``."""
        if iou.numel() == 0:
            raise ValueError(f"cannot match with an empty IoU matrix of shape {tuple(iou.shape)}")
        best_iou, best_object = iou.max(dim=0)  # [N], [N]
        matches = best_object.clone()
        matches[best_iou < self.low_threshold] = BACKGROUND
        matches[(best_iou >= self.low_threshold) & (best_iou < self.high_threshold)] = IGNORE
        if self.allow_low_quality_matches:
            # Each object's best IoU; every anchor reaching it (ties included) gets its best object back.
            best_per_object = iou.max(dim=1).values  # [G]
            anchors_to_restore = torch.where(iou == best_per_object[:, None])[1]
            matches[anchors_to_restore] = best_object[anchors_to_restore]
        return matches


class BalancedSampler:
    """Pick ``batch_size_per_image`` indices per image, at most ``positive_fraction`` of them positive.

    Called with one label tensor per image (``>= 1`` positive, ``BACKGROUND_LABEL`` negative,
    ``IGNORE`` ignored), returns
    per image a positive mask and a negative mask (uint8, same shape). When there are too few
    positives the negatives fill the batch. Random draws use ``generator`` if given, else torch's
    global generator (so seeding torch makes a run repeatable).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float,
                 generator: torch.Generator | None = None):
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.generator = generator

    def _draw(self, candidates: Tensor, count: int) -> Tensor:
        order = torch.randperm(candidates.numel(), device=candidates.device, generator=self.generator)
        return candidates[order[:count]]

    def __call__(self, labels_per_image: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image, ``labels [A_i]`` -> a positive and a negative mask, uint8 ``[A_i]`` each (1 = drawn)."""
        positive_masks, negative_masks = [], []
        for labels in labels_per_image:
            positive = torch.where(labels >= 1)[0]
            negative = torch.where(labels == BACKGROUND_LABEL)[0]
            num_positive = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_negative = min(negative.numel(), self.batch_size_per_image - num_positive)
            positive_mask = torch.zeros_like(labels, dtype=torch.uint8)
            negative_mask = torch.zeros_like(labels, dtype=torch.uint8)
            positive_mask[self._draw(positive, num_positive)] = 1
            negative_mask[self._draw(negative, num_negative)] = 1
            positive_masks.append(positive_mask)
            negative_masks.append(negative_mask)
        return positive_masks, negative_masks
