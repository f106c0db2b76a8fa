"""The Region Proposal Network: score every anchor as object-or-not, refine it, keep the best.

1. ``RPNHead``: a 3x3 conv shared by all levels, then per anchor one objectness logit and 4 deltas.
2. Proposals: decode the deltas onto the anchors, keep the ``pre_nms_top_n`` best of each level,
   clip to the image, drop tiny boxes, NMS within each level, keep the ``post_nms_top_n`` best.
3. Training: match anchors to objects (IoU >= 0.7 positive, < 0.3 background, and each object's
   best anchor), sample 256 per image (at most half positive) and compute the two RPN losses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor, nn

from . import boxes as box_ops
from .anchors import AnchorGenerator
from .losses import rpn_loss
from .matching import BACKGROUND, BACKGROUND_LABEL, IGNORE, BalancedSampler, Matcher

if TYPE_CHECKING:  # annotations only: the config and the batch are built elsewhere
    from .config import Config
    from .transform import ImageBatch

__all__ = ["RPNHead", "RegionProposalNetwork", "RPNOutput", "flatten_level_predictions"]


class RPNHead(nn.Module):
    """Per level: features ``[N, C, H, W]`` -> objectness ``[N, A, H, W]`` and deltas ``[N, 4A, H, W]``."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness = nn.Conv2d(in_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level ``[N, C, H_l, W_l]`` -> objectness logits ``[N, A, H_l, W_l]`` and deltas
        ``[N, 4A, H_l, W_l]``."""
        hidden = [torch.relu(self.conv(f)) for f in features]
        return [self.objectness(h) for h in hidden], [self.deltas(h) for h in hidden]


def flatten_level_predictions(prediction: Tensor, values_per_anchor: int) -> Tensor:
    """``[N, A * V, H, W]`` -> ``[N, H * W * A, V]``, in the anchors' order (cell-major, then anchor)."""
    n, _, height, width = prediction.shape
    per_anchor = prediction.view(n, -1, values_per_anchor, height, width)  # [N, A, V, H, W]
    return per_anchor.permute(0, 3, 4, 1, 2).reshape(n, -1, values_per_anchor)  # [N, H*W*A, V]


@dataclass
class RPNOutput:
    """Everything the RPN computed (``model.trace`` exposes it). "Per image" lists hold one tensor per
    image; anchor indices count in the concatenation of all levels' anchors (``torch.cat(anchors)``)."""

    objectness: list[Tensor]  # per level [N, A, H, W] logits
    deltas: list[Tensor]  # per level [N, 4A, H, W]
    anchors: list[Tensor]  # per level [H*W*A, 4], shared by the images
    decoded_boxes: Tensor  # [N, A_total, 4]: every anchor moved by its predicted deltas (not clipped)
    pre_nms_boxes: list[Tensor]  # per image [T, 4]: the per-level top-k, clipped, before NMS
    pre_nms_scores: list[Tensor]  # per image [T] objectness probabilities
    pre_nms_levels: list[Tensor]  # per image [T]: FPN level index, 0 = P2 ... 4 = P6
    pre_nms_anchor_index: list[Tensor]  # per image [T]: the anchor each box came from
    nms_survivors: list[Tensor]  # per image [S]: indices into pre_nms_boxes that NMS kept, best first
    # per image [P]: the first post_nms_top_n survivors, the proposals (the rest: cut by the top-k)
    nms_keep: list[Tensor]
    proposals: list[Tensor]  # per image [P, 4], after NMS
    proposal_scores: list[Tensor]  # per image [P]
    # Training only (with targets), per image over all anchors:
    # [A_total] 1 object, 0 background (BACKGROUND_LABEL), -1 ignored (IGNORE)
    anchor_labels: list[Tensor] | None = None
    # [A_total, 4]: the object each anchor was matched to (any box for non-positives)
    matched_boxes: list[Tensor] | None = None
    # [A_total, 4]: the deltas that would move the anchor onto it
    regression_targets: list[Tensor] | None = None
    sampled_positive: list[Tensor] | None = None  # [S+]: indices of the anchors sampled as positives
    sampled_negative: list[Tensor] | None = None  # [S-]: ... and as negatives
    losses: dict | None = None

    @property
    def proposal_levels(self) -> list[Tensor]:
        """Per image ``[P]``: the FPN level index of each proposal's anchor (0 = P2)."""
        return [levels[keep] for levels, keep in zip(self.pre_nms_levels, self.nms_keep)]

    @property
    def proposal_anchor_index(self) -> list[Tensor]:
        """Per image ``[P]``: the anchor each proposal came from."""
        return [index[keep] for index, keep in zip(self.pre_nms_anchor_index, self.nms_keep)]


@dataclass
class _Selection:
    """Proposal selection for a batch, per image (the fields of ``RPNOutput`` of the same names)."""

    pre_nms_boxes: list[Tensor] = field(default_factory=list)
    pre_nms_scores: list[Tensor] = field(default_factory=list)
    pre_nms_levels: list[Tensor] = field(default_factory=list)
    pre_nms_anchor_index: list[Tensor] = field(default_factory=list)
    nms_survivors: list[Tensor] = field(default_factory=list)
    nms_keep: list[Tensor] = field(default_factory=list)


class RegionProposalNetwork(nn.Module):
    """Anchors + head + proposal selection + (in training) targets and losses."""

    def __init__(self, config: Config, in_channels: int, batched_nms: Callable = box_ops.batched_nms,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.anchor_generator = AnchorGenerator(config.anchor_sizes, config.aspect_ratios)
        self.head = RPNHead(in_channels, self.anchor_generator.num_anchors_per_location()[0])
        self.box_coder = box_ops.BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(config.rpn_fg_iou_thresh, config.rpn_bg_iou_thresh,
                               allow_low_quality_matches=True)
        self.sampler = BalancedSampler(config.rpn_batch_size_per_image, config.rpn_positive_fraction,
                                       generator)
        self.config = config
        self.batched_nms = batched_nms
        self.min_size = 1e-3

    def top_n(self, stage: str) -> int:
        """How many boxes ``stage`` ("pre": per level before NMS, "post": per image after) keeps, in
        the current mode (training keeps more)."""
        c = self.config
        table = {
            ("pre", True): c.rpn_pre_nms_top_n_train, ("pre", False): c.rpn_pre_nms_top_n_test,
            ("post", True): c.rpn_post_nms_top_n_train, ("post", False): c.rpn_post_nms_top_n_test,
        }
        return table[(stage, self.training)]

    def select_proposals(self, boxes: Tensor, objectness: Tensor, anchors_per_level: list[int],
                         image_sizes: list[tuple[int, int]]) -> _Selection:
        """``boxes [N, A_total, 4]``, ``objectness [N, A_total]`` -> per image pre-NMS boxes and what
        NMS kept."""
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

        selection = _Selection()
        # per image
        for image_boxes, image_scores, anchor_index, size in zip(boxes, scores, top_indices, image_sizes):
            # 2. Clip to the image, drop boxes of (almost) no size and those under the score threshold.
            image_boxes = box_ops.clip_boxes_to_image(image_boxes, size)
            keep = box_ops.remove_small_boxes(image_boxes, self.min_size)
            keep = keep[image_scores[keep] >= self.config.rpn_score_thresh]
            image_boxes, image_scores, image_levels = image_boxes[keep], image_scores[keep], levels[keep]
            selection.pre_nms_boxes.append(image_boxes)
            selection.pre_nms_scores.append(image_scores)
            selection.pre_nms_levels.append(image_levels)
            selection.pre_nms_anchor_index.append(anchor_index[keep])
            # 3. NMS within each level, then the post_nms_top_n best of the image.
            survivors = self.batched_nms(image_boxes, image_scores, image_levels, self.config.rpn_nms_thresh)
            selection.nms_survivors.append(survivors)
            selection.nms_keep.append(survivors[: self.top_n("post")])
        return selection

    def anchor_targets(self, anchors: Tensor, targets: list[dict]) -> tuple[list[Tensor], list[Tensor]]:
        """``anchors [A, 4]`` -> per image: labels ``[A]`` (1 object, 0 background, -1 ignored) and
        matched boxes ``[A, 4]``."""
        labels, matched_boxes = [], []
        for target in targets:
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:  # an image without objects: every anchor is background
                labels.append(torch.full((len(anchors),), float(BACKGROUND_LABEL), device=anchors.device))
                matched_boxes.append(torch.zeros_like(anchors))
                continue
            matches = self.matcher(box_ops.box_iou(gt_boxes, anchors))  # [A]
            matched_boxes.append(gt_boxes[matches.clamp(min=0)])
            image_labels = (matches >= 0).to(torch.float32)  # 1 for a matched object
            image_labels[matches == BACKGROUND] = BACKGROUND_LABEL
            image_labels[matches == IGNORE] = IGNORE
            labels.append(image_labels)
        return labels, matched_boxes

    def training_targets(self, output: RPNOutput, all_anchors: Tensor, targets: list[dict]) -> None:
        """Label, match and sample the anchors ``[A_total, 4]`` of each image (recorded in ``output``)."""
        output.anchor_labels, output.matched_boxes = self.anchor_targets(all_anchors, targets)
        output.regression_targets = [self.box_coder.encode(m, all_anchors) for m in output.matched_boxes]
        positive_masks, negative_masks = self.sampler(output.anchor_labels)
        output.sampled_positive = [torch.where(m)[0] for m in positive_masks]
        output.sampled_negative = [torch.where(m)[0] for m in negative_masks]

    def losses(self, output: RPNOutput, flat_objectness: Tensor, flat_deltas: Tensor) -> dict[str, Tensor]:
        """The two RPN losses (scalars) over the sampled anchors of the whole batch, from
        ``flat_objectness [N, A_total]`` and ``flat_deltas [N, A_total, 4]``."""
        num_anchors = flat_objectness.shape[1]
        # Indices into the batch's flattened anchors: image i's anchor a is i * A_total + a.
        positive = torch.cat([p + i * num_anchors for i, p in enumerate(output.sampled_positive)])
        negative = torch.cat([n + i * num_anchors for i, n in enumerate(output.sampled_negative)])
        loss_objectness, loss_box = rpn_loss(
            flat_objectness.flatten(), flat_deltas.reshape(-1, 4), torch.cat(output.anchor_labels),
            torch.cat(output.regression_targets), positive, negative,
        )
        return {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}

    def forward(self, images: ImageBatch, features: list[Tensor],
                targets: list[dict] | None = None) -> RPNOutput:
        """``images``: the padded ``ImageBatch``; ``features``: the FPN levels P2..P6, each
        ``[N, C, H_l, W_l]``; ``targets``: per image ``boxes [G, 4]`` (training) -> ``RPNOutput``."""
        objectness, deltas = self.head(features)
        anchors = self.anchor_generator(tuple(images.tensors.shape[-2:]), features)
        anchors_per_level = [len(a) for a in anchors]
        all_anchors = torch.cat(anchors)  # [A_total, 4]
        # [N, A_total]
        flat_objectness = torch.cat([flatten_level_predictions(o, 1) for o in objectness], dim=1)[..., 0]
        flat_deltas = torch.cat([flatten_level_predictions(d, 4) for d in deltas], dim=1)  # [N, A_total, 4]

        # Proposals are inputs to the heads, not something to backpropagate through.
        boxes = self.box_coder.decode(flat_deltas.detach(), all_anchors[None])  # [N, A_total, 4]
        selection = self.select_proposals(boxes, flat_objectness.detach(), anchors_per_level,
                                          images.image_sizes)
        output = RPNOutput(
            objectness=objectness, deltas=deltas, anchors=anchors, decoded_boxes=boxes,
            pre_nms_boxes=selection.pre_nms_boxes, pre_nms_scores=selection.pre_nms_scores,
            pre_nms_levels=selection.pre_nms_levels, pre_nms_anchor_index=selection.pre_nms_anchor_index,
            nms_survivors=selection.nms_survivors, nms_keep=selection.nms_keep,
            proposals=[b[k] for b, k in zip(selection.pre_nms_boxes, selection.nms_keep)],
            proposal_scores=[s[k] for s, k in zip(selection.pre_nms_scores, selection.nms_keep)],
        )
        if targets is not None:
            self.training_targets(output, all_anchors, targets)
            output.losses = self.losses(output, flat_objectness, flat_deltas)
        return output
