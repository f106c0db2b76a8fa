"""The Region Proposal Network: score every anchor as object-or-not, refine it, keep the best.

1. ``RPNHead``: a 3x3 conv shared by all levels, then per anchor one objectness logit and 4 deltas.
2. Proposals: decode the deltas onto the anchors, keep the ``pre_nms_top_n`` best of each level,
   clip to the image, drop tiny boxes, NMS within each level, keep the ``post_nms_top_n`` best.
3. Training: match anchors to objects (IoU >= 0.7 positive, < 0.3 background, and each object's
   best anchor), sample 256 per image (at most half positive) and compute the two RPN losses.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import boxes as box_ops
from .anchors import AnchorGenerator
from .losses import rpn_loss
from .matching import BACKGROUND, IGNORE, BalancedSampler, Matcher

__all__ = ["RPNHead", "RegionProposalNetwork", "RPNOutput", "flatten_level_predictions"]


class RPNHead(nn.Module):
    """Per level: features ``[N, C, H, W]`` -> objectness ``[N, A, H, W]`` and deltas ``[N, 4A, H, W]``."""

    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness = nn.Conv2d(in_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        hidden = [torch.relu(self.conv(f)) for f in features]
        return [self.objectness(h) for h in hidden], [self.deltas(h) for h in hidden]


def flatten_level_predictions(prediction: Tensor, values_per_anchor: int) -> Tensor:
    """``[N, A * V, H, W]`` -> ``[N, H * W * A, V]``, in the anchors' order (cell-major, then anchor)."""
    n, _, height, width = prediction.shape
    return prediction.view(n, -1, values_per_anchor, height, width).permute(0, 3, 4, 1, 2).reshape(n, -1, values_per_anchor)


@dataclass
class RPNOutput:
    """Everything the RPN computed, per image where it says so (``model.trace`` exposes it)."""

    objectness: list[Tensor]  # per level [N, A, H, W] logits
    deltas: list[Tensor]  # per level [N, 4A, H, W]
    anchors: list[Tensor]  # per level [H*W*A, 4], shared by the images
    pre_nms_boxes: list[Tensor]  # per image [T, 4]: the per-level top-k, clipped, before NMS
    pre_nms_scores: list[Tensor]  # per image [T]
    pre_nms_levels: list[Tensor]  # per image [T]
    proposals: list[Tensor]  # per image [P, 4], after NMS
    proposal_scores: list[Tensor]  # per image [P]
    anchor_labels: list[Tensor] | None = None  # training: per image [A_total] 1 / 0 / -1
    sampled_positive: Tensor | None = None  # training: indices into the batch's flattened anchors
    sampled_negative: Tensor | None = None
    losses: dict | None = None


class RegionProposalNetwork(nn.Module):
    """Anchors + head + proposal selection + (in training) targets and losses."""

    def __init__(self, config, in_channels: int, batched_nms=box_ops.batched_nms, generator=None):
        super().__init__()
        self.anchor_generator = AnchorGenerator(config.anchor_sizes, config.aspect_ratios)
        self.head = RPNHead(in_channels, self.anchor_generator.num_anchors_per_location()[0])
        self.box_coder = box_ops.BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(config.rpn_fg_iou_thresh, config.rpn_bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedSampler(config.rpn_batch_size_per_image, config.rpn_positive_fraction, generator)
        self.config = config
        self.batched_nms = batched_nms
        self.min_size = 1e-3

    def top_n(self, stage: str) -> int:
        c = self.config
        table = {
            ("pre", True): c.rpn_pre_nms_top_n_train, ("pre", False): c.rpn_pre_nms_top_n_test,
            ("post", True): c.rpn_post_nms_top_n_train, ("post", False): c.rpn_post_nms_top_n_test,
        }
        return table[(stage, self.training)]

    def select_proposals(self, boxes: Tensor, objectness: Tensor, anchors_per_level: list[int], image_sizes):
        """``boxes [N, A_total, 4]``, ``objectness [N, A_total]`` -> per image pre-NMS and final proposals."""
        # 1. The best pre_nms_top_n anchors of each level (top-k per level keeps every scale in play).
        top_indices, levels, offset = [], [], 0
        for level, level_scores in enumerate(objectness.split(anchors_per_level, dim=1)):
            k = min(self.top_n("pre"), level_scores.shape[1])
            top_indices.append(level_scores.topk(k, dim=1).indices + offset)
            levels.append(torch.full((k,), level, dtype=torch.int64, device=boxes.device))
            offset += level_scores.shape[1]
        top_indices = torch.cat(top_indices, dim=1)  # [N, T]
        levels = torch.cat(levels)  # [T]
        image_index = torch.arange(len(boxes), device=boxes.device)[:, None]
        boxes, scores = boxes[image_index, top_indices], torch.sigmoid(objectness[image_index, top_indices])

        pre_boxes, pre_scores, pre_levels, final_boxes, final_scores = [], [], [], [], []
        for image_boxes, image_scores, size in zip(boxes, scores, image_sizes):  # per image
            # 2. Clip to the image, drop boxes of (almost) no size and those under the score threshold.
            image_boxes = box_ops.clip_boxes_to_image(image_boxes, size)
            keep = box_ops.remove_small_boxes(image_boxes, self.min_size)
            keep = keep[image_scores[keep] >= self.config.rpn_score_thresh]
            image_boxes, image_scores, image_levels = image_boxes[keep], image_scores[keep], levels[keep]
            pre_boxes.append(image_boxes)
            pre_scores.append(image_scores)
            pre_levels.append(image_levels)
            # 3. NMS within each level, then the post_nms_top_n best of the image.
            keep = self.batched_nms(image_boxes, image_scores, image_levels, self.config.rpn_nms_thresh)
            keep = keep[: self.top_n("post")]
            final_boxes.append(image_boxes[keep])
            final_scores.append(image_scores[keep])
        return pre_boxes, pre_scores, pre_levels, final_boxes, final_scores

    def anchor_targets(self, anchors: Tensor, targets: list[dict]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: labels ``[A]`` (1 object, 0 background, -1 ignored) and matched boxes ``[A, 4]``."""
        labels, matched_boxes = [], []
        for target in targets:
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:  # an image without objects: every anchor is background
                labels.append(torch.zeros(len(anchors), dtype=torch.float32, device=anchors.device))
                matched_boxes.append(torch.zeros_like(anchors))
                continue
            matches = self.matcher(box_ops.box_iou(gt_boxes, anchors))  # [A]
            matched_boxes.append(gt_boxes[matches.clamp(min=0)])
            image_labels = (matches >= 0).to(torch.float32)
            image_labels[matches == BACKGROUND] = 0.0
            image_labels[matches == IGNORE] = -1.0
            labels.append(image_labels)
        return labels, matched_boxes

    def forward(self, images, features: list[Tensor], targets: list[dict] | None = None) -> RPNOutput:
        """``images``: the padded ``ImageBatch``; ``features``: the FPN levels P2..P6."""
        objectness, deltas = self.head(features)
        anchors = self.anchor_generator(tuple(images.tensors.shape[-2:]), features)
        anchors_per_level = [len(a) for a in anchors]
        all_anchors = torch.cat(anchors)  # [A_total, 4]
        flat_objectness = torch.cat([flatten_level_predictions(o, 1) for o in objectness], dim=1)[..., 0]  # [N, A_total]
        flat_deltas = torch.cat([flatten_level_predictions(d, 4) for d in deltas], dim=1)  # [N, A_total, 4]

        # Proposals are inputs to the heads, not something to backpropagate through.
        boxes = self.box_coder.decode(flat_deltas.detach(), all_anchors[None])
        selected = self.select_proposals(boxes, flat_objectness.detach(), anchors_per_level, images.image_sizes)
        output = RPNOutput(objectness, deltas, anchors, *selected)

        if targets is not None:
            labels, matched_boxes = self.anchor_targets(all_anchors, targets)
            target_deltas = torch.cat([self.box_coder.encode(m, all_anchors) for m in matched_boxes])
            positive_masks, negative_masks = self.sampler(labels)
            positive = torch.where(torch.cat(positive_masks))[0]
            negative = torch.where(torch.cat(negative_masks))[0]
            loss_objectness, loss_box = rpn_loss(
                flat_objectness.flatten(), flat_deltas.reshape(-1, 4), torch.cat(labels), target_deltas, positive, negative
            )
            output.anchor_labels, output.sampled_positive, output.sampled_negative = labels, positive, negative
            output.losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
        return output
