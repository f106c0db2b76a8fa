"""The RoI heads: for every proposal, a class, a refined box and a mask.

* **Box head**: RoIAlign 7x7 from the proposal's FPN level, two fully connected layers, then per
  class a score and 4 deltas (class-specific refinement).
* **Mask head**: RoIAlign 14x14, four 3x3 convs, a 2x transposed conv, one 28x28 mask logit per class
  (or, for the paper's Table 2(e), fully connected layers: ``mask_heads``; or, for its Table 3, no
  mask branch at all: ``Config.train_mask_branch=False``, a Faster R-CNN with RoIAlign).
* **Training**: proposals (plus the ground-truth boxes) are matched to objects at IoU 0.5, 512
  per image are sampled with at most 25 % positives; the positives (all, or a random
  ``mask_positives_per_image`` of them) also train the mask head, against the object's mask cut
  out by RoIAlign at the proposal.
* **Inference**: softmax scores, per-class decoded boxes, score threshold, per-class NMS, the top
  100; the mask of each detection's class, later pasted into the image (``masks.paste_masks``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import boxes as box_ops
from .config import Config
from .losses import box_head_loss, mask_loss, mask_loss_softmax
from .mask_heads import MLPMaskHead, MLPMaskPredictor
from .masks import mask_targets
from .matching import BACKGROUND, BACKGROUND_LABEL, IGNORE, BalancedSampler, Matcher
from .roi_ops import MultiScaleRoIAlign, fpn_level, roi_align

__all__ = ["BoxHead", "BoxPredictor", "MaskHead", "MaskPredictor", "build_mask_branch", "RoIHeads",
           "RoIHeadsOutput"]


class BoxHead(nn.Module):
    """``[R, C, 7, 7]`` pooled features -> ``[R, representation_size]`` (two FC layers, ReLU)."""

    def __init__(self, in_features: int, representation_size: int):
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        """``x [R, C, 7, 7]`` -> ``[R, representation_size]``."""
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(start_dim=1)))))


class BoxPredictor(nn.Module):
    """``[R, D]`` -> class logits ``[R, K]`` and one box's deltas per class ``[R, 4K]``."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [R, D]`` -> class logits ``[R, K]``, deltas ``[R, 4K]``."""
        return self.cls_score(x), self.bbox_pred(x)


class MaskHead(nn.Module):
    """``[R, C, 14, 14]`` -> ``[R, layers[-1], 14, 14]``: 3x3 conv + ReLU, ``len(layers)`` times."""

    def __init__(self, in_channels: int, layers: tuple[int, ...]):
        super().__init__()
        channels = (in_channels, *layers)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(channels[:-1], channels[1:]))
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x [R, C, 14, 14]`` -> ``[R, layers[-1], 14, 14]``."""
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


class MaskPredictor(nn.Module):
    """``[R, C, 14, 14]`` -> mask logits ``[R, K, 28, 28]``: 2x up-convolution, ReLU, 1x1 conv per class."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int):
        super().__init__()
        self.conv5_mask = nn.ConvTranspose2d(in_channels, hidden, 2, stride=2)
        self.mask_fcn_logits = nn.Conv2d(hidden, num_classes, 1)
        for layer in (self.conv5_mask, self.mask_fcn_logits):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x [R, C, 14, 14]`` -> every class's mask logits ``[R, K, 28, 28]``."""
        return self.mask_fcn_logits(F.relu(self.conv5_mask(x)))


def build_mask_branch(config: Config, in_channels: int) -> tuple[nn.Module, nn.Module] | tuple[None, None]:
    """The mask head and predictor that ``config`` names: ``[R, C, 14, 14]`` features -> (head) ->
    (predictor) -> every class's logits ``[R, K, 28, 28]``. ``mask_head="fcn"``: the paper's FCN;
    ``"mlp"``: Table 2(e)'s fully connected one; ``train_mask_branch=False``: ``(None, None)``."""
    if not config.train_mask_branch:
        return None, None
    if config.mask_head == "mlp":
        head = MLPMaskHead(in_channels, config.mask_roi_size, config.mask_mlp_layers)
        # 2 x the RoI's side: the FCN's up-convolution doubles it, and the mask targets follow the logits
        size = 2 * config.mask_roi_size
        return head, MLPMaskPredictor(config.mask_mlp_layers[-1], config.num_classes, size)
    head = MaskHead(in_channels, config.mask_layers)
    return head, MaskPredictor(config.mask_layers[-1], config.mask_layers[-1], config.num_classes)


# The heads read P2..P5; a RoI's level is chosen among these by its size (``roi_ops.fpn_level``).
FIRST_LEVEL, LAST_LEVEL = 2, 5


@dataclass
class RoIHeadsOutput:
    """What the heads computed (``model.trace`` exposes it). Per image lists unless said otherwise;
    "RoI index" counts in that image's ``proposals``."""

    proposals: list[Tensor]  # the RoIs the box head saw (training: the sampled ones), [R_i, 4]
    roi_levels: list[Tensor]  # [R_i]: the FPN level each RoI is read from (2 = P2 ... 5 = P5)
    box_features_shape: tuple  # (R, C, 7, 7): what RoIAlign cut for the box head
    class_logits: Tensor  # [R, K] over all images
    box_deltas: Tensor  # [R, 4K]
    refined_boxes: list[Tensor]  # [R_i, K, 4]: every class's refinement of every RoI, clipped
    class_scores: list[Tensor]  # [R_i, K] softmax
    # Inference. pre_nms: boxes, scores, labels, rois (RoI index) of the candidates above the score threshold.
    pre_nms: list[dict] | None = None
    nms_survivors: list[Tensor] | None = None  # [S_i]: indices into pre_nms per-class NMS kept, best first
    detection_candidates: list[Tensor] | None = None  # [D_i]: each detection's index in pre_nms (the
    # survivors beyond these were cut by the top detections_per_img)
    # detections: boxes, labels, scores, masks [D, 1, M, M] probabilities; in the order of the model's output
    # (best first; with Config.mask_overlap_rescore, by the rescored scores: the scores here stay NMS's)
    detections: list[dict] | None = None
    detection_rois: list[Tensor] | None = None  # [D]: the RoI each detection refined
    detection_mask_logits: list[Tensor] | None = None  # [D, M, M]: the logits of each detection's own class
    mask_logits: Tensor | None = None  # [P or D, K, M, M]: every class's mask logits
    mask_features_shape: tuple | None = None  # (P or D, C, 14, 14)
    # Training (with targets), per sampled RoI:
    sampled_labels: list[Tensor] | None = None  # [R_i]: 1..K-1, 0 background (sampled RoIs are never ignored)
    sampled_targets: list[Tensor] | None = None  # [R_i, 4]: deltas towards the matched object
    matched_objects: list[Tensor] | None = None  # [R_i]: the matched object (any for background)
    mask_rois: list[Tensor] | None = None  # [P_i]: the sampled RoIs the mask head trains on (positives)
    mask_targets: list[Tensor] | None = None  # [P_i, M, M]: each one's object mask cut out at the RoI
    losses: dict | None = None

    def reorder_detections(self, orders: list[Tensor]) -> None:
        """Put each image's detections in ``orders[i]`` (``[D_i]`` indices), in every field that has
        one entry per detection, so that detection ``k`` stays one detection across them and the
        model's final output (``rescore_by_mask_overlap`` re-sorts that)."""
        def reordered(per_image: list) -> list:
            return [value[order] for value, order in zip(per_image, orders)]

        self.detections = [{key: value[order] for key, value in d.items()}
                           for d, order in zip(self.detections, orders)]
        self.detection_rois = reordered(self.detection_rois)
        self.detection_candidates = reordered(self.detection_candidates)
        self.detection_mask_logits = reordered(self.detection_mask_logits)
        # one tensor over all images: shift each order by its start
        if orders and self.mask_logits is not None:
            starts = itertools.accumulate([0] + [len(order) for order in orders[:-1]])
            rows = torch.cat([order + start for order, start in zip(orders, starts)])
            self.mask_logits = self.mask_logits[rows]


@dataclass
class _Sample:
    """The RoIs sampled for training, per image, with their targets."""

    rois: list[Tensor]
    labels: list[Tensor]
    objects: list[Tensor]
    deltas: list[Tensor]


def match_rois(matcher: Matcher, proposals: list[Tensor], targets: list[dict]
               ) -> tuple[list[Tensor], list[Tensor]]:
    """Per image: each RoI's class label ``[R_i]`` (``>= 1``, ``BACKGROUND_LABEL`` or ``IGNORE``) and the
    index ``[R_i]`` of its matched object (0 where there is none). ``proposals``: per image ``[R_i, 4]``."""
    labels, objects = [], []
    for image_proposals, target in zip(proposals, targets):
        gt_boxes = target["boxes"]
        if gt_boxes.numel() == 0:
            matched = torch.zeros(len(image_proposals), dtype=torch.int64, device=image_proposals.device)
            image_labels = torch.full_like(matched, BACKGROUND_LABEL)
        else:
            matches = matcher(box_ops.box_iou(gt_boxes, image_proposals))
            matched = matches.clamp(min=0)
            image_labels = target["labels"][matched].to(torch.int64)
            image_labels[matches == BACKGROUND] = BACKGROUND_LABEL
            image_labels[matches == IGNORE] = IGNORE
        labels.append(image_labels)
        objects.append(matched)
    return labels, objects


def sample_rois(proposals: list[Tensor], targets: list[dict], matcher: Matcher, sampler: BalancedSampler,
                box_coder: box_ops.BoxCoder) -> _Sample:
    """Add the ground truth to the proposals (per image ``[P_i, 4]``), match at IoU 0.5, sample ->
    per image the sampled RoIs ``[R_i, 4]``, their labels ``[R_i]``, objects ``[R_i]`` and target deltas
    ``[R_i, 4]``."""
    proposals = [torch.cat([p, t["boxes"]]) for p, t in zip(proposals, targets)]
    labels, objects = match_rois(matcher, proposals, targets)
    positive_masks, negative_masks = sampler(labels)
    sample = _Sample([], [], [], [])
    for image_proposals, target, image_labels, matched, pos, neg in zip(
        proposals, targets, labels, objects, positive_masks, negative_masks
    ):
        keep = torch.where(pos | neg)[0]
        gt_boxes = target["boxes"]
        if gt_boxes.numel() == 0:  # a dummy box keeps shapes simple; no positive ever uses it
            gt_boxes = torch.zeros((1, 4), dtype=image_proposals.dtype, device=image_proposals.device)
        sample.rois.append(image_proposals[keep])
        sample.labels.append(image_labels[keep])
        sample.objects.append(matched[keep])
        sample.deltas.append(box_coder.encode(gt_boxes[matched[keep]], image_proposals[keep]))
    return sample


def mask_training_rois(sample: _Sample, cap: int, generator: torch.Generator | None = None) -> list[Tensor]:
    """Per image: the indices ``[P_i]`` (ascending) of the sampled RoIs that train the mask head.

    Every positive, or with ``cap = n > 0`` (``Config.mask_positives_per_image``) at most n of them,
    drawn at random from ``generator``.
    """
    positive = [torch.where(labels > 0)[0] for labels in sample.labels]
    if cap == 0:
        return positive
    drawn = [torch.randperm(len(p), device=p.device, generator=generator)[:cap] for p in positive]
    return [p[torch.sort(d).values] for p, d in zip(positive, drawn)]


def select_detections(refined: list[Tensor], scores: list[Tensor], config: Config,
                      batched_nms: Callable = box_ops.batched_nms
                      ) -> tuple[list[dict], list[Tensor], list[dict]]:
    """Per image (``refined [R_i, K, 4]``, ``scores [R_i, K]``): drop background, threshold,
    per-class NMS, top-k -> pre-NMS dicts, NMS's survivors (indices into the pre-NMS dicts, best
    first) and the final dicts.

    Each dict also holds ``rois [D]``, the RoI each candidate refines; a final dict holds
    ``candidates [D]``, each detection's index in the pre-NMS dict.
    """
    pre_nms, survivors, detections = [], [], []
    for boxes, image_scores in zip(refined, scores):
        num_rois, num_classes = image_scores.shape
        labels = torch.arange(num_classes, device=boxes.device).expand_as(image_scores)
        rois = torch.arange(num_rois, device=boxes.device)[:, None].expand_as(image_scores)
        # Every (RoI, class) pair but the background is a candidate detection.
        candidates = {
            "boxes": boxes[:, 1:].reshape(-1, 4), "scores": image_scores[:, 1:].reshape(-1),
            "labels": labels[:, 1:].reshape(-1), "rois": rois[:, 1:].reshape(-1),
        }
        keep = torch.where(candidates["scores"] > config.box_score_thresh)[0]
        keep = keep[box_ops.remove_small_boxes(candidates["boxes"][keep], 1e-2)]
        candidates = {key: value[keep] for key, value in candidates.items()}
        pre_nms.append(candidates)
        kept = batched_nms(candidates["boxes"], candidates["scores"], candidates["labels"],
                           config.box_nms_thresh)
        survivors.append(kept)
        keep = kept[: config.detections_per_img]
        detections.append({**{key: value[keep] for key, value in candidates.items()}, "candidates": keep})
    return pre_nms, survivors, detections


class RoIHeads(nn.Module):
    """Box and mask heads with their training targets and their inference post-processing.

    ``roi_op`` pools the features for the heads (RoIAlign, or RoIPool for the ablation);
    ``align_op`` is the RoIAlign kernel (readable or torchvision's) that cuts the mask targets.
    """

    def __init__(self, config: Config, in_channels: int, roi_op: Callable = roi_align,
                 batched_nms: Callable = box_ops.batched_nms, generator: torch.Generator | None = None,
                 align_op: Callable = roi_align):
        super().__init__()
        c = config
        self.config = c
        self.box_pool = MultiScaleRoIAlign(c.box_roi_size, c.sampling_ratio, c.aligned, roi_op,
                                           c.roi_canonical_size)
        self.mask_pool = MultiScaleRoIAlign(c.mask_roi_size, c.sampling_ratio, c.aligned, roi_op,
                                            c.roi_canonical_size)
        self.box_head = BoxHead(in_channels * c.box_roi_size**2, c.representation_size)
        self.box_predictor = BoxPredictor(c.representation_size, c.num_classes)
        self.mask_head, self.mask_predictor = build_mask_branch(c, in_channels)  # None, None: boxes only
        self.box_coder = box_ops.BoxCoder(c.box_weights)
        self.matcher = Matcher(c.box_fg_iou_thresh, c.box_bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedSampler(c.box_batch_size_per_image, c.box_positive_fraction, generator)
        self.batched_nms = batched_nms
        self.align_op = align_op

    # --- training targets ----------------------------------------------------------------------

    def mask_targets(self, targets: list[dict], sample: _Sample, size: int, positive: list[Tensor]
                     ) -> list[Tensor]:
        """Per image: the mask targets ``[P_i, size, size]`` of the RoIs ``positive[i]``
        (``mask_training_rois``).

        When every image's masks have the same size (Shapes; COCO batches of one size), the whole
        batch is one RoIAlign call over all the masks, each RoI pointing at its own object: the same
        numbers as one call per image, without the per-call overhead (8 calls cost a Shapes step 22 ms).
        """
        masks = [t["masks"] for t in targets]
        rois = [r[i] for r, i in zip(sample.rois, positive)]
        objects = [o[i] for o, i in zip(sample.objects, positive)]
        if len({tuple(m.shape[-2:]) for m in masks}) > 1:
            return [mask_targets(m, r, o, size, op=self.align_op, aligned=self.config.aligned)
                    for m, r, o in zip(masks, rois, objects)]
        first_object = torch.tensor([0] + [len(m) for m in masks[:-1]], device=masks[0].device).cumsum(0)
        batch_objects = torch.cat([o + first for o, first in zip(objects, first_object)])
        batch = mask_targets(torch.cat(masks), torch.cat(rois), batch_objects, size, op=self.align_op,
                             aligned=self.config.aligned)
        return list(batch.split([len(r) for r in rois]))

    # --- both --------------------------------------------------------------------------------------

    def classify(self, features: list[Tensor], rois: list[Tensor], image_sizes: list[tuple[int, int]]
                 ) -> RoIHeadsOutput:
        """The box head on ``rois`` (per image ``[R_i, 4]``): class scores ``[R_i, K]`` and every
        class's refined box ``[R_i, K, 4]``. ``features``: P2..P5, each ``[N, C, H_l, W_l]``."""
        pooled = self.box_pool(features, rois, image_sizes)  # [R, C, 7, 7]
        class_logits, box_deltas = self.box_predictor(self.box_head(pooled))
        counts = [len(r) for r in rois]
        refined = [
            box_ops.clip_boxes_to_image(self.box_coder.decode(d.reshape(len(d), -1, 4), r[:, None]), size)
            for d, r, size in zip(box_deltas.split(counts), rois, image_sizes)
        ]
        scores = list(F.softmax(class_logits, dim=-1).split(counts))
        levels = [fpn_level(r, FIRST_LEVEL, LAST_LEVEL, self.config.roi_canonical_size) for r in rois]
        return RoIHeadsOutput(proposals=rois, roi_levels=levels, box_features_shape=tuple(pooled.shape),
                              class_logits=class_logits, box_deltas=box_deltas, refined_boxes=refined,
                              class_scores=scores)

    def predict_masks(self, features: list[Tensor], rois: list[Tensor], image_sizes: list[tuple[int, int]]
                      ) -> tuple[Tensor, tuple]:
        """The mask head on ``rois`` (per image ``[R_i, 4]``) -> every class's logits ``[R, K, M, M]``
        and the pooled features' shape."""
        pooled = self.mask_pool(features, rois, image_sizes)  # [R, C, 14, 14]
        return self.mask_predictor(self.mask_head(pooled)), tuple(pooled.shape)

    def forward(self, features: list[Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None) -> RoIHeadsOutput:
        """``features``: P2..P5, each ``[N, C, H_l, W_l]`` (the heads do not read P6); ``proposals``: per
        image ``[P_i, 4]``; ``image_sizes``: each image's ``(h, w)`` inside the padded batch. With
        ``targets``, ``train_step``; without, ``detect``."""
        if targets is None:
            return self.detect(features, proposals, image_sizes)
        return self.train_step(features, proposals, image_sizes, targets)

    def train_step(self, features: list[Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]],
                   targets: list[dict]) -> RoIHeadsOutput:
        """Training: sample RoIs from ``proposals`` (per image ``[P_i, 4]``), classify them, train masks on
        the positives -> the output with the three losses (``loss_classifier``, ``loss_box_reg``,
        ``loss_mask``)."""
        sample = sample_rois(proposals, targets, self.matcher, self.sampler, self.box_coder)
        output = self.classify(features, sample.rois, image_sizes)
        output.sampled_labels, output.sampled_targets = sample.labels, sample.deltas
        output.matched_objects = sample.objects
        loss_classifier, loss_box = box_head_loss(
            output.class_logits, output.box_deltas, torch.cat(sample.labels), torch.cat(sample.deltas)
        )
        output.losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box}
        if self.mask_head is not None:  # a box-only model (Table 3) has no mask loss
            output.losses["loss_mask"] = self.train_masks(features, image_sizes, targets, sample, output)
        return output

    def train_masks(self, features: list[Tensor], image_sizes: list[tuple[int, int]], targets: list[dict],
                    sample: _Sample, output: RoIHeadsOutput) -> Tensor:
        """The mask head on the sample's positive RoIs against their objects' masks -> ``loss_mask``;
        fills ``output``'s ``mask_rois``, ``mask_logits [P, K, M, M]`` and ``mask_targets``."""
        output.mask_rois = mask_training_rois(sample, self.config.mask_positives_per_image,
                                              self.sampler.generator)
        positive_rois = [rois[i] for rois, i in zip(sample.rois, output.mask_rois)]
        output.mask_logits, output.mask_features_shape = self.predict_masks(features, positive_rois,
                                                                            image_sizes)
        mask_size = output.mask_logits.shape[-1]
        output.mask_targets = self.mask_targets(targets, sample, mask_size, output.mask_rois)
        mask_labels = torch.cat([labels[i] for labels, i in zip(sample.labels, output.mask_rois)])
        loss_fn = mask_loss if self.config.mask_loss == "sigmoid" else mask_loss_softmax
        return loss_fn(output.mask_logits, mask_labels, torch.cat(output.mask_targets))

    def detect(self, features: list[Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]]
               ) -> RoIHeadsOutput:
        """Inference: classify the proposals (per image ``[P_i, 4]``), keep the best per class, predict
        each detection's mask -> per image ``detections``: ``boxes [D_i, 4]``, ``labels [D_i]``,
        ``scores [D_i]``, ``masks [D_i, 1, M, M]`` (probabilities, not yet pasted)."""
        output = self.classify(features, proposals, image_sizes)
        output.pre_nms, output.nms_survivors, selected = select_detections(
            output.refined_boxes, output.class_scores, self.config, self.batched_nms)
        output.detection_rois = [d.pop("rois") for d in selected]
        output.detection_candidates = [d.pop("candidates") for d in selected]
        output.detections = selected
        if self.mask_head is None:  # a box-only model (Table 3): detections without "masks"
            return output
        boxes = [d["boxes"] for d in selected]
        output.mask_logits, output.mask_features_shape = self.predict_masks(features, boxes, image_sizes)
        labels = torch.cat([d["labels"] for d in selected])
        rows = torch.arange(len(labels), device=labels.device)
        counts = [len(d["boxes"]) for d in selected]
        output.detection_mask_logits = list(output.mask_logits[rows, labels].split(counts))  # [D_i, M, M]
        # per image [D_i, M, M]
        probabilities = self.mask_probabilities(output.mask_logits, labels).split(counts)
        for detection, image_probabilities in zip(selected, probabilities):
            detection["masks"] = image_probabilities[:, None]  # [D, 1, M, M]
        return output

    def mask_probabilities(self, mask_logits: Tensor, labels: Tensor) -> Tensor:
        """Each detection's mask probabilities ``[D, M, M]`` from every class's logits ``[D, K, M, M]``,
        read the way the head was trained: the sigmoid of its own class's logit, or, for a head
        trained with a softmax over classes, that softmax's share of its own class."""
        rows = torch.arange(len(labels), device=labels.device)
        if self.config.mask_loss == "softmax":
            return F.softmax(mask_logits, dim=1)[rows, labels]
        return torch.sigmoid(mask_logits[rows, labels])
