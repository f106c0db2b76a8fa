"""The losses of Mask R-CNN: L = L_cls + L_box + L_mask, for the RPN and for the heads.

* classification: binary cross-entropy for the RPN's objectness, softmax cross-entropy over the
  classes for the box head;
* box regression: smooth L1 on the encoded deltas, only for positive samples, summed and divided by
  the number of *all* sampled anchors/RoIs (so positives are not up-weighted when they are few);
* masks: per-pixel sigmoid binary cross-entropy on the mask of the ground-truth class only, so the
  classes do not compete for a pixel (the paper's choice; ``mask_loss_softmax`` is the rejected
  alternative, a softmax across classes per pixel).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["smooth_l1", "rpn_loss", "box_head_loss", "mask_loss", "mask_loss_softmax"]

# torchvision's beta (Detectron's for the RPN only): quadratic only for |error| < 1/9, so well-fit boxes
# are not pushed around.
SMOOTH_L1_BETA = 1.0 / 9


def smooth_l1(prediction: Tensor, target: Tensor, beta: float = SMOOTH_L1_BETA) -> Tensor:
    """Summed smooth L1 of ``prediction - target`` (same shape, any) -> scalar.

    Per element: ``0.5 x^2 / beta`` where ``|x| < beta``, else ``|x| - 0.5 beta``.
    """
    error = (prediction - target).abs()
    return torch.where(error < beta, 0.5 * error**2 / beta, error - 0.5 * beta).sum()


def rpn_loss(objectness: Tensor, deltas: Tensor, labels: Tensor, target_deltas: Tensor,
             positive: Tensor, negative: Tensor) -> tuple[Tensor, Tensor]:
    """RPN losses over the sampled anchors of the whole batch.

    Args:
        objectness ``[A]`` logits, deltas ``[A, 4]``, labels ``[A]`` (1 object, 0 background),
        target_deltas ``[A, 4]``; positive, negative: indices ``[P]``, ``[Q]`` of the sampled anchors.
    Returns ``(loss_objectness, loss_rpn_box_reg)``.
    """
    sampled = torch.cat([positive, negative])
    loss_objectness = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])
    loss_box = smooth_l1(deltas[positive], target_deltas[positive]) / sampled.numel()
    return loss_objectness, loss_box


def box_head_loss(class_logits: Tensor, box_deltas: Tensor, labels: Tensor,
                  target_deltas: Tensor) -> tuple[Tensor, Tensor]:
    """Box-head losses over the sampled RoIs.

    Args:
        class_logits ``[R, K]``, box_deltas ``[R, K * 4]`` (one box per class), labels ``[R]``
        (0 = background), target_deltas ``[R, 4]``.
    Only the deltas of each positive RoI's own class are regressed.
    Returns ``(loss_classifier, loss_box_reg)``.
    """
    loss_classifier = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]
    deltas = box_deltas.reshape(len(box_deltas), -1, 4)[positive, labels[positive]]  # [P, 4]
    loss_box = smooth_l1(deltas, target_deltas[positive]) / labels.numel()
    return loss_classifier, loss_box


def mask_loss(mask_logits: Tensor, labels: Tensor, mask_targets: Tensor) -> Tensor:
    """Per-pixel sigmoid BCE on each RoI's own class: ``[P, K, M, M]``, ``[P]``, ``[P, M, M]`` -> scalar."""
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0  # no positive RoI: zero, but still part of the graph
    own_class = mask_logits[torch.arange(len(labels), device=labels.device), labels]  # [P, M, M]
    return F.binary_cross_entropy_with_logits(own_class, mask_targets)


def mask_loss_softmax(mask_logits: Tensor, labels: Tensor, mask_targets: Tensor) -> Tensor:
    """The variant the paper rejects: a softmax over the K class masks at every pixel.

    Foreground pixels must pick the RoI's class, background pixels class 0, so the classes compete
    for every pixel. Same arguments and shapes as ``mask_loss``: ``mask_logits [P, K, M, M]``,
    ``labels [P]``, ``mask_targets [P, M, M]`` -> scalar.
    """
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0
    background = torch.zeros_like(labels)[:, None, None]
    pixel_class = torch.where(mask_targets >= 0.5, labels[:, None, None], background)
    return F.cross_entropy(mask_logits, pixel_class)
