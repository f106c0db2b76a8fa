"""``MaskRCNN``: the modules composed. ``forward`` for training and inference, ``trace`` to look inside.

    images -> transform -> backbone (ResNet + FPN) -> RPN -> RoI heads -> postprocess -> detections

Both ``forward`` and ``trace`` run ``_run``, which records every stage in a ``Trace``; ``forward``
returns the losses (training, with targets) or the detections (inference), as torchvision's
``maskrcnn_resnet50_fpn`` does, under the same names.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.ops
from torch import Tensor, nn

from . import boxes as box_ops
from . import roi_ops
from .backbone import build_backbone
from .config import Config
from .roi_heads import RoIHeads, RoIHeadsOutput
from .rpn import RegionProposalNetwork, RPNOutput
from .transform import ImageBatch, postprocess, prepare_batch

__all__ = ["MaskRCNN", "Trace", "check_inputs"]


@dataclass
class Trace:
    """Every intermediate stage of one pass (per image lists unless said otherwise)."""

    batch: ImageBatch  # the normalised, resized, padded input
    features: list[Tensor]  # P2..P6, each [N, C, H_l, W_l]
    rpn: RPNOutput  # anchors, objectness, deltas, proposals before/after NMS (and targets in training)
    heads: RoIHeadsOutput  # RoIs, class scores, refined boxes, detections before/after NMS, mask logits
    detections: list[dict] | None  # inference: in each original image's pixels, masks pasted [D, 1, H, W]
    losses: dict | None  # training: the five losses

    @property
    def anchors(self) -> list[Tensor]:
        return self.rpn.anchors

    @property
    def proposals(self) -> list[Tensor]:
        return self.rpn.proposals


def _operations(config: Config):
    """The NMS and RoI pooling kernels: ours, or torchvision's compiled ones."""
    if config.ops == "torchvision":
        nms, align, pool = torchvision.ops.batched_nms, torchvision.ops.roi_align, torchvision.ops.roi_pool
    else:
        nms, align, pool = box_ops.batched_nms, roi_ops.roi_align, roi_ops.roi_pool
    if config.roi_op == "pool":
        # RoIPool has no sampling points or alignment: accept and ignore them.
        return nms, lambda x, rois, size, scale, _ratio, _aligned: pool(x, rois, size, scale)
    return nms, align


def _describe(x) -> str:
    return f"shape {tuple(x.shape)} and dtype {x.dtype}" if isinstance(x, Tensor) else f"a {type(x).__name__}"


def check_inputs(images, targets=None) -> None:
    """Raise ``ValueError`` naming the image or target that breaks torchvision's input convention."""
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise ValueError(f"images must be a non-empty list of [3, H, W] float tensors, got {_describe(images)}")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"images[{i}] must be a [3, H, W] tensor, got {_describe(image)}")
        if not image.is_floating_point():
            raise ValueError(f"images[{i}] must be float in 0..1, got {image.dtype} (divide a uint8 image by 255)")
        if image.numel() and (image.min() < 0 or image.max() > 1):
            raise ValueError(f"images[{i}] must hold values in 0..1, got {image.min().item():.3g}..{image.max().item():.3g}")
    if targets is None:
        return
    if len(targets) != len(images):
        raise ValueError(f"got {len(targets)} targets for {len(images)} images")
    for i, target in enumerate(targets):
        for key in ("boxes", "labels", "masks"):
            if key not in target:
                raise ValueError(f"targets[{i}] lacks {key!r}")
        boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"targets[{i}]['boxes'] must be [N, 4], got {_describe(boxes)}")
        if len(labels) != len(boxes) or len(masks) != len(boxes):
            raise ValueError(
                f"targets[{i}] has {len(boxes)} boxes, {len(labels)} labels and {len(masks)} masks: they must match"
            )
        if masks.dim() != 3 or tuple(masks.shape[-2:]) != tuple(images[i].shape[-2:]):
            raise ValueError(f"targets[{i}]['masks'] must be [N, H, W] with the image's H, W, got {_describe(masks)}")
        degenerate = torch.where((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))[0]
        if len(degenerate):
            j = degenerate[0].item()
            raise ValueError(f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} has no area (needs x1 > x0 and y1 > y0)")


class MaskRCNN(nn.Module):
    """Mask R-CNN with a ResNet-FPN backbone, built from a ``Config``.

    ``model(images)`` in eval mode -> per image ``boxes [D, 4], labels [D], scores [D], masks [D, 1, H, W]``;
    ``model(images, targets)`` in train mode -> the five losses.
    """

    def __init__(self, config: Config | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config if config is not None else Config()
        nms, roi_op = _operations(self.config)
        self.backbone = build_backbone(self.config)
        channels = self.backbone.out_channels
        self.rpn = RegionProposalNetwork(self.config, channels, batched_nms=nms, generator=generator)
        self.roi_heads = RoIHeads(self.config, channels, roi_op=roi_op, batched_nms=nms, generator=generator)

    def _run(self, images: list[Tensor], targets: list[dict] | None) -> Trace:
        check_inputs(images, targets)
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        batch, targets = prepare_batch(images, targets, self.config)
        features = self.backbone(batch.tensors)
        rpn = self.rpn(batch, features, targets)
        heads = self.roi_heads(features[:4], rpn.proposals, batch.image_sizes, targets)  # P6 is for the RPN only
        if targets is not None:
            return Trace(batch, features, rpn, heads, None, {**rpn.losses, **heads.losses})
        detections = postprocess(heads.detections, batch.image_sizes, original_sizes)
        return Trace(batch, features, rpn, heads, detections, None)

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError("in training mode the model needs targets; call model.eval() for detections")
        trace = self._run(images, targets if self.training else None)
        return trace.losses if self.training else trace.detections

    def trace(self, images, targets: list[dict] | None = None) -> Trace:
        """Run one image (a ``[3, H, W]`` tensor) or a list, and return every stage.

        In eval mode without targets, this is inference; with targets (in train mode), the training
        pass with its targets, samples and losses. No gradients are kept unless enabled by the caller.
        """
        if isinstance(images, Tensor):
            images = [images]
        return self._run(images, targets)

    # Loading ---------------------------------------------------------------------------------------

    @classmethod
    def from_torchvision(cls, path_or_state_dict, config: Config | None = None) -> "MaskRCNN":
        """A model with the weights of torchvision's ``maskrcnn_resnet50_fpn`` (a file or a state dict)."""
        from .weights import load_torchvision, read_state_dict

        state_dict = read_state_dict(path_or_state_dict)
        if config is None:
            num_classes = state_dict["roi_heads.box_predictor.cls_score.weight"].shape[0]
            config = Config(num_classes=num_classes)
        model = cls(config)
        load_torchvision(model, state_dict)
        return model

    @classmethod
    def from_checkpoint(cls, path, map_location="cpu") -> "MaskRCNN":
        """Rebuild a model saved with ``weights.save_checkpoint``: its config travels with it."""
        from .weights import load_checkpoint

        return load_checkpoint(path, map_location=map_location)[0]
