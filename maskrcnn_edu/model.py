"""``MaskRCNN``: the modules composed. ``forward`` for training and inference, ``trace`` to look inside.

    images -> transform -> backbone (ResNet C2..C5 + FPN P2..P6) -> RPN -> RoI heads -> postprocess
           -> detections

With ``Config.mask_overlap_rescore`` (off in both presets; appendix A), ``masks.rescore_by_mask_overlap``
follows
postprocess: the pasted masks lower the scores of detections whose pixels better ones have claimed.

Both ``forward`` and ``trace`` run ``_run``, which records every stage in a ``Trace``; ``forward``
returns the losses (training, with targets) or the detections (inference), as torchvision's
``maskrcnn_resnet50_fpn`` does, under the same names. ``trace`` returns the ``Trace`` itself,
computed without gradients and without changing the model (weights, BatchNorm statistics, mode
and the samplers' random state are as they were).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.ops
from torch import Tensor, nn

from . import boxes as box_ops
from . import roi_ops
from .backbone import build_backbone
from .coco_names import COCO_CLASS_NAMES
from .config import Config, coco_r50_fpn
from .inputs import check_inputs
from .masks import binary_masks_in_chunks, rescore_by_mask_overlap
from .roi_heads import RoIHeads, RoIHeadsOutput
from .rpn import RegionProposalNetwork, RPNOutput
from .transform import ImageBatch, postprocess, prepare_batch
from .weights import (bare_state_dict_message, is_bare_state_dict, load_file, load_torchvision, load_weights,
                      read_checkpoint, read_state_dict)

__all__ = ["MaskRCNN", "Trace", "DetectionLineage", "load_checkpoint", "load_model", "weights_kind"]


@dataclass
class Trace:
    """Every intermediate stage of one pass. Lists hold one entry per image unless said otherwise.

    Boxes are in the coordinates of the *resized* image (``image(i)``), the one the network saw;
    ``detections`` alone are in each original image's pixels (``scales`` converts).
    """

    batch: ImageBatch  # the normalised, resized, padded input: tensors [N, 3, H_pad, W_pad], image_sizes
    original_sizes: list[tuple[int, int]]  # (H, W) of each image as given
    stages: list[Tensor]  # the ResNet body's C2..C5, each [N, C_l, H_l, W_l] (strides 4..32)
    features: list[Tensor]  # the FPN's P2..P6, each [N, C, H_l, W_l] (strides 4..64)
    rpn: RPNOutput  # anchors, objectness, deltas, proposals before/after NMS (and targets in training)
    heads: RoIHeadsOutput  # RoIs, class scores, refined boxes, detections before/after NMS, mask logits
    detections: list[dict] | None  # inference: in each original image's pixels, masks pasted [D, 1, H, W]
    targets: list[dict] | None  # training: the targets resized with their images (boxes in resized pixels)
    losses: dict | None  # training: the five losses
    image_mean: tuple = (0.485, 0.456, 0.406)
    image_std: tuple = (0.229, 0.224, 0.225)

    @property
    def anchors(self) -> list[Tensor]:
        """Per FPN level, the anchors ``[H_l * W_l * A, 4]`` (shared by the images)."""
        return self.rpn.anchors

    @property
    def proposals(self) -> list[Tensor]:
        """Per image, the RPN's proposals ``[P, 4]`` (in the resized image's pixels)."""
        return self.rpn.proposals

    @property
    def scales(self) -> list[tuple[float, float]]:
        """Per image ``(scale_y, scale_x)``: resized size / original size (multiply original pixels by it)."""
        return [(h / oh, w / ow) for (h, w), (oh, ow) in zip(self.batch.image_sizes, self.original_sizes)]

    def image(self, i: int = 0) -> Tensor:
        """Image ``i`` as the network saw it, made viewable again: un-normalised, padding cut off ->
        ``[3, h, w]`` in 0..1, at the resized size (the coordinates of every box in the trace)."""
        height, width = self.batch.image_sizes[i]
        pixels = self.batch.tensors[i, :, :height, :width]
        mean = torch.as_tensor(self.image_mean, dtype=pixels.dtype, device=pixels.device)[:, None, None]
        std = torch.as_tensor(self.image_std, dtype=pixels.dtype, device=pixels.device)[:, None, None]
        return (pixels * std + mean).clamp(0, 1)

    def lineage(self, detection: int, image: int = 0) -> DetectionLineage:
        """Follow detection ``detection`` of image ``image`` (an index into ``detections[image]``) back
        through the heads and the RPN to its anchor: the detection's RoI (``heads.detection_rois``) is a
        proposal, which is one of the RPN's pre-NMS boxes (``rpn.nms_keep``), which came from one anchor
        (``rpn.pre_nms_anchor_index``). Raises ``ValueError`` for a training trace or an index out of range.
        """
        heads, rpn = self.heads, self.rpn
        if heads.detections is None or self.detections is None:
            raise ValueError("trace has no detections: trace the model without targets (model.trace(image))")
        if heads.detection_mask_logits is None:
            raise ValueError("the model has no mask branch (train_mask_branch=False): no lineage to follow")
        if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < len(heads.detections):
            raise ValueError(f"image must be an int in 0..{len(heads.detections) - 1}, got {image!r}")
        found = heads.detections[image]
        count = len(found["scores"])
        if isinstance(detection, bool) or not isinstance(detection, int) or not 0 <= detection < count:
            raise ValueError(f"detection must be an int in 0..{count - 1} "
                             f"(image {image} has {count} detections), "
                             f"got {detection!r}")
        roi = int(heads.detection_rois[image][detection])
        candidate = int(rpn.nms_keep[image][roi])
        anchor_index = int(rpn.pre_nms_anchor_index[image][candidate])
        label = int(found["labels"][detection])
        return DetectionLineage(
            image=image, detection=detection, label=label, score=float(found["scores"][detection]),
            final_score=float(self.detections[image]["scores"][detection]),
            anchor_index=anchor_index, anchor_level=int(rpn.pre_nms_levels[image][candidate]),
            anchor=torch.cat(rpn.anchors)[anchor_index],
            objectness=float(rpn.pre_nms_scores[image][candidate]),
            rpn_box=rpn.decoded_boxes[image, anchor_index], candidate=candidate, roi=roi,
            proposal=heads.proposals[image][roi], roi_level=int(heads.roi_levels[image][roi]),
            class_scores=heads.class_scores[image][roi], refined=heads.refined_boxes[image][roi, label],
            mask_logits=heads.detection_mask_logits[image][detection], mask=found["masks"][detection, 0],
            final_box=self.detections[image]["boxes"][detection],
            final_mask=self.detections[image]["masks"][detection, 0],
        )


@dataclass
class DetectionLineage:
    """Where one detection came from, stage by stage (``Trace.lineage``).

    Boxes ``[4]`` are in the resized image's pixels (the trace's frame) except ``final_box``
    (original pixels). ``anchor_index`` counts in ``torch.cat(trace.rpn.anchors)``, ``anchor_level``
    is 0 = P2 ... 4 = P6; ``candidate`` indexes the RPN's pre-NMS boxes; ``roi`` the proposals (which
    are the RoIs at inference). ``rpn_box``: the anchor moved by its deltas (unclipped);
    ``proposal``: the same box clipped, as it survived NMS. ``refined``: the RoI refined for the
    detection's class (= the detection's box). ``mask_logits [M, M]`` and ``mask [M, M]``
    (probabilities) for its own class; ``final_mask [H, W]``: pasted at the original size. ``score``
    is the heads' (after NMS); ``final_score`` the model's output (they differ only where
    ``Config.mask_overlap_rescore`` lowered it).
    """

    image: int
    detection: int
    label: int
    score: float
    final_score: float
    anchor_index: int
    anchor_level: int
    anchor: Tensor
    objectness: float
    rpn_box: Tensor
    candidate: int
    roi: int
    proposal: Tensor
    roi_level: int
    class_scores: Tensor
    refined: Tensor
    mask_logits: Tensor
    mask: Tensor
    final_box: Tensor
    final_mask: Tensor


def _operations(config: Config):
    """The kernels: NMS, the RoI pooling of the heads, and RoIAlign (for mask targets): ours or
    torchvision's."""
    if config.ops == "torchvision":
        nms, align, pool = torchvision.ops.batched_nms, torchvision.ops.roi_align, torchvision.ops.roi_pool
    else:
        nms, align, pool = box_ops.batched_nms, roi_ops.roi_align, roi_ops.roi_pool
    if config.roi_op == "pool":
        # RoIPool has no sampling points or alignment: accept and ignore them.
        return nms, lambda x, rois, size, scale, _ratio, _aligned: pool(x, rois, size, scale), align
    if config.roi_op == "warp":  # ours with either setting: torchvision has no RoIWarp kernel
        return nms, roi_ops.roi_warp, align
    return nms, align, align


@contextlib.contextmanager
def _unchanged(model: nn.Module):
    """Run a block without leaving a trace on ``model``: its mode, its buffers (BatchNorm's running
    statistics) and every random state the samplers draw from are restored afterwards."""
    was_training = model.training
    buffers = [(buffer, buffer.clone()) for buffer in model.buffers()]
    generators = {id(g): g for g in model.generators() if g is not None}
    generator_states = [(g, g.get_state()) for g in generators.values()]
    devices = sorted({b.device.index for b, _ in buffers if b.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        model.train(was_training)
        for buffer, saved in buffers:
            # only what changed: an untouched buffer keeps its autograd version
            if not torch.equal(buffer, saved):
                buffer.copy_(saved)
        for generator, state in generator_states:
            generator.set_state(state)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple["MaskRCNN", dict]:
    """Rebuild the model saved with ``weights.save_checkpoint`` -> ``(model, checkpoint dict)``."""
    checkpoint = read_checkpoint(path, map_location=map_location)
    model = MaskRCNN(Config.from_dict(checkpoint["config"]))
    load_weights(model, checkpoint["model"], source=str(path))
    return model, checkpoint


class MaskRCNN(nn.Module):
    """Mask R-CNN with a ResNet-FPN backbone, built from a ``Config``.

    ``model(images)`` in eval mode -> per image ``boxes [D, 4], labels [D], scores [D], masks [D, 1, H, W]``;
    ``model(images, targets)`` in train mode -> the five losses.
    """

    def __init__(self, config: Config | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config if config is not None else Config()
        nms, roi_op, align = _operations(self.config)
        self.backbone = build_backbone(self.config)
        channels = self.backbone.out_channels
        self.rpn = RegionProposalNetwork(self.config, channels, batched_nms=nms, generator=generator)
        self.roi_heads = RoIHeads(self.config, channels, roi_op=roi_op, batched_nms=nms, generator=generator,
                                  align_op=align)

    def generators(self) -> list[torch.Generator | None]:
        """The random generators of the two samplers (``None``: torch's global one)."""
        return [self.rpn.sampler.generator, self.roi_heads.sampler.generator]

    def _run(self, images: list[Tensor], targets: list[dict] | None, paste_masks: bool = True) -> Trace:
        check_inputs(images, targets, self.config.num_classes)
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        batch, targets = prepare_batch(images, targets, self.config)
        stages = self.backbone.body(batch.tensors)  # C2..C5
        features = self.backbone.fpn(stages)  # P2..P6
        rpn = self.rpn(batch, features, targets)
        heads = self.roi_heads(features[:4], rpn.proposals, batch.image_sizes, targets)  # P6: the RPN's only
        trace = Trace(batch=batch, original_sizes=original_sizes, stages=stages, features=features, rpn=rpn,
                      heads=heads, detections=None, targets=targets, losses=None,
                      image_mean=self.config.image_mean, image_std=self.config.image_std)
        if targets is not None:
            trace.losses = {**rpn.losses, **heads.losses}
        else:
            trace.detections = postprocess(heads.detections, batch.image_sizes, original_sizes,
                                           self.config.aligned, paste=paste_masks)
            if self.config.mask_overlap_rescore:
                sizes = original_sizes
                rescored = [self._rescore(d, size, paste_masks) for d, size in zip(trace.detections, sizes)]
                trace.detections = [d for d, _ in rescored]
                heads.reorder_detections([order for _, order in rescored])  # detection k: one in both
        return trace

    def _rescore(self, detection: dict, image_size: tuple[int, int], pasted: bool) -> tuple[dict, Tensor]:
        """``rescore_by_mask_overlap`` of one image's detections, their masks pasted or ``[D, 1, M, M]``."""
        if pasted:
            return rescore_by_mask_overlap(detection)
        masks, boxes = detection["masks"], detection["boxes"]
        chunks = binary_masks_in_chunks(masks, boxes, image_size, self.config.aligned)
        return rescore_by_mask_overlap(detection, binary_chunks=chunks)

    def forward(self, images: list[Tensor], targets: list[dict] | None = None) -> list[dict] | dict:
        """torchvision's interface. ``images``: float ``[3, H, W]`` tensors in 0..1, of any sizes.

        In eval mode -> per image a dict of ``boxes [D, 4]`` (xyxy, in that image's pixels), ``labels [D]``,
        ``scores [D]`` (best first) and ``masks [D, 1, H, W]`` (probabilities, pasted into the image).
        In train mode, with ``targets`` (per image ``boxes [G, 4]``, ``labels [G]``, ``masks [G, H, W]``)
        -> the five losses: ``loss_objectness``, ``loss_rpn_box_reg`` (RPN), ``loss_classifier``,
        ``loss_box_reg``, ``loss_mask`` (heads). ``trace`` returns every stage in between.
        """
        if self.training and targets is None:
            raise ValueError("in training mode the model needs targets; call model.eval() for detections")
        trace = self._run(images, targets if self.training else None)
        return trace.losses if self.training else trace.detections

    @torch.no_grad()
    def detect(self, images: list[Tensor], paste_masks: bool = True) -> list[dict]:
        """Detections, as ``model.eval()(images)`` returns them. ``paste_masks=False`` keeps each
        mask at the head's ``[D, 1, M, M]`` (boxes in the image's pixels), to be pasted a few at a
        time (``masks.binary_masks_in_chunks``): what ``maskrcnn-edu detect`` does on photographs."""
        if self.training:
            raise ValueError("detect needs the model in eval mode: call model.eval() first")
        return self._run(images, None, paste_masks).detections

    def trace(self, images: Tensor | list[Tensor], targets: list[dict] | dict | None = None) -> Trace:
        """Run one image (a ``[3, H, W]`` tensor) or a list, and return every stage.

        Without targets: inference, as ``model.eval()(images)`` computes it, with the detections.
        With targets (one dict, or a list): the training pass, as ``model.train()(images, targets)``
        computes it: anchor labels and samples, RoI targets, mask targets and the five losses.
        Either way no gradients are kept and the model is left exactly as it was: its train/eval
        mode, its buffers (BatchNorm running statistics) and the random states its samplers draw
        from, so ``model(images, targets)`` right after draws the same samples as the trace did.
        """
        if isinstance(images, Tensor):
            images = [images]
        if isinstance(targets, dict):
            targets = [targets]
        with torch.no_grad(), _unchanged(self):
            self.train(targets is not None)
            return self._run(list(images), targets)

    # Loading ---------------------------------------------------------------------------------------

    @classmethod
    def from_torchvision(cls, path_or_state_dict: str | Path | dict,
                         config: Config | None = None) -> "MaskRCNN":
        """A model with the weights of torchvision's ``maskrcnn_resnet50_fpn`` (a file or a state dict).

        Without a ``config``, the class count is read from the weights; torchvision's 91-entry COCO
        layout also gets COCO's class names (``maskrcnn_edu.coco_names.COCO_CLASS_NAMES``).
        """
        state_dict = read_state_dict(path_or_state_dict)
        if config is None:
            num_classes = state_dict["roi_heads.box_predictor.cls_score.weight"].shape[0]
            names = tuple(COCO_CLASS_NAMES) if num_classes == len(COCO_CLASS_NAMES) else ()
            config = Config(num_classes=num_classes, class_names=names)
        model = cls(config)
        load_torchvision(model, state_dict)
        return model

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "MaskRCNN":
        """Rebuild a model saved with ``weights.save_checkpoint``: its config travels with it."""
        return load_checkpoint(path, map_location=map_location)[0]


# Loading any weights file: our checkpoints, or torchvision's Mask R-CNN weights ----------------------

# Keys every torchvision Mask R-CNN state dict has, in its current and its older layout alike.
TORCHVISION_KEYS = ("backbone.body.conv1.weight", "roi_heads.box_predictor.cls_score.weight")


def weights_kind(saved: object) -> str:
    """``"maskrcnn-edu"``, ``"maskrcnn-edu state dict"``, ``"torchvision"`` or ``""``: what a loaded
    weights file holds.

    Decided by content, not by the file's name: our checkpoints (``weights.save_checkpoint``) are
    a dict with a ``"config"`` and a ``"model"`` entry; a bare state dict of our model has our key
    names (``rpn.head.objectness.weight``) and no config; torchvision's are a flat state dict with
    its own key names (``backbone.body.conv1.weight``, ``rpn.head.cls_logits.weight``).
    """
    if not isinstance(saved, dict):
        return ""
    if "config" in saved and isinstance(saved.get("model"), dict):
        return "maskrcnn-edu"
    if is_bare_state_dict(saved):
        return "maskrcnn-edu state dict"
    if all(key in saved for key in TORCHVISION_KEYS):
        return "torchvision"
    return ""


def load_model(path: str | Path, min_size: int | None = None, max_size: int | None = None) -> MaskRCNN:
    """A ``MaskRCNN`` from one of our checkpoints or from torchvision's ``maskrcnn_resnet50_fpn`` weights.

    torchvision's 91-class COCO layout gets COCO's category names (label = COCO category id).
    ``min_size`` / ``max_size``, when given, replace the input resize of the model's config.
    """
    requested = {"min_size": min_size, "max_size": max_size}
    sizes = {name: value for name, value in requested.items() if value is not None}
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1 pixel, got {value}")
    saved = load_file(path)
    kind = weights_kind(saved)
    if kind == "torchvision":
        num_classes = saved[TORCHVISION_KEYS[1]].shape[0]
        names = COCO_CLASS_NAMES if num_classes == len(COCO_CLASS_NAMES) else ()
        return MaskRCNN.from_torchvision(saved, coco_r50_fpn(num_classes, class_names=names, **sizes))
    if kind == "maskrcnn-edu state dict":
        raise ValueError(bare_state_dict_message(path))
    if kind != "maskrcnn-edu":
        raise ValueError(
            f"{path} is neither a maskrcnn-edu checkpoint (a dict with 'config' and 'model' entries) nor a "
            f"torchvision Mask R-CNN state dict (keys such as {', '.join(TORCHVISION_KEYS)})"
        )
    # Built from the dict already read (not read again), with the new input sizes in its config.
    model = MaskRCNN(Config.from_dict(saved["config"]).replace(**sizes))
    load_weights(model, saved["model"], source=str(path))
    return model
