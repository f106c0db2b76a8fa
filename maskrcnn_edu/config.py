"""One frozen, JSON-serialisable dataclass holds every setting of the model.

``coco_r50_fpn()`` is torchvision's ``maskrcnn_resnet50_fpn`` (and the paper's); ``shapes()`` is a
small model that trains from scratch on the synthetic Shapes set on a laptop CPU. Checkpoints store
the config, so a model can be rebuilt from a file without being told its shape.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Config", "coco_r50_fpn", "shapes"]

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
NORMS = ("frozen_bn", "bn")
OPS = ("readable", "torchvision")
ROI_OPS = ("align", "pool", "warp")
MASK_LOSSES = ("sigmoid", "softmax")
MASK_HEADS = ("fcn", "mlp")


def _tuples(value):
    """Lists (as JSON gives them back) -> tuples, recursively, so a loaded config is hashable."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class Config:
    """Every setting of Mask R-CNN. Defaults are torchvision's ``maskrcnn_resnet50_fpn``."""

    num_classes: int = 91  # including background (label 0)
    class_names: tuple = ()  # optional, index = label

    # Backbone: a torchvision ResNet body and an FPN.
    backbone: str = "resnet50"
    norm: str = "frozen_bn"  # "frozen_bn" for pretrained weights, "bn" to train the statistics from scratch
    # ResNet stages that train, counted from the top (0..5): 3 keeps conv1 and layer1 frozen, as
    # torchvision's recipe does. fit() follows it unless TrainSettings.layers names a stage.
    trainable_layers: int = 3
    fpn_channels: int = 256

    # Input transform: resize so the short side is min_size (long side at most max_size), normalise, pad.
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple = (0.485, 0.456, 0.406)
    image_std: tuple = (0.229, 0.224, 0.225)
    size_divisible: int = 32

    # Anchors: one size tuple per FPN level (strides 4, 8, 16, 32, 64), the same ratios everywhere.
    anchor_sizes: tuple = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple = ((0.5, 1.0, 2.0),) * 5

    # Region proposal network.
    rpn_pre_nms_top_n_train: int = 2000  # per level, before NMS
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000  # per image, after NMS
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_score_thresh: float = 0.0

    # RoI heads.
    # "pool" swaps RoIAlign for Fast R-CNN's RoIPool, "warp" for MNC's RoIWarp (RoIPool's rounded box,
    # RoIAlign's bilinear reading): the paper's Table 2(c), ablations only.
    roi_op: str = "align"
    # A RoI of this side is read from P4, one half its side from P3, and so on (the FPN paper's
    # eq. 1, made for ImageNet-sized objects: 224).
    roi_canonical_size: float = 224.0
    box_roi_size: int = 7
    mask_roi_size: int = 14
    sampling_ratio: int = 2
    # True: pixel centres at +0.5 everywhere masks meet boxes, in RoIAlign, the mask targets and the
    # pasting (detectron2's ROIAlignV2). False: torchvision's model, which keeps the paper's
    # half-cell offset and pastes masks into whole-pixel boxes.
    aligned: bool = False
    representation_size: int = 1024
    # The mask head: "fcn" (the paper's: 3x3 convs of mask_layers' widths, a 2x up-convolution, a 1x1
    # conv per class) or "mlp" (Table 2(e)'s ablation: fully connected layers of mask_mlp_layers'
    # widths, then one to K x 28 x 28 logits; roi_heads.build_mask_branch builds either).
    mask_head: str = "fcn"
    mask_layers: tuple = (256, 256, 256, 256)
    mask_mlp_layers: tuple = (1024, 1024)  # the paper's MLP row: fc 1024 -> fc 1024 -> fc K*28*28
    # False: no mask branch at all, a Faster R-CNN with RoIAlign that trains and detects boxes only
    # (no loss_mask, no "masks" in the detections): Table 3's comparison of box AP with and without
    # the multi-task training.
    train_mask_branch: bool = True
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    # 0: every positive RoI of the box head's sample also trains the mask head (torchvision's, the
    # paper's). n > 0: at most n per image, drawn at random from them, so the box head can see more
    # positives than the mask head pays for.
    mask_positives_per_image: int = 0
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_weights: tuple = (10.0, 10.0, 5.0, 5.0)
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    detections_per_img: int = 100
    # After the masks are pasted: lower each detection's score by the share of its mask that
    # better-scored detections already cover (``roi_heads.rescore_by_mask_overlap``). Not in
    # torchvision's model; the Shapes preset turns it on.
    mask_overlap_rescore: bool = False
    mask_loss: str = "sigmoid"  # "softmax" is the variant the paper rejects (chapter 05)

    # Implementation of NMS and RoIAlign: ours ("readable") or torchvision's compiled kernels.
    ops: str = "readable"

    def __post_init__(self):
        checks = {
            "backbone": (self.backbone, BACKBONES),
            "norm": (self.norm, NORMS),
            "ops": (self.ops, OPS),
            "roi_op": (self.roi_op, ROI_OPS),
            "mask_loss": (self.mask_loss, MASK_LOSSES),
            "mask_head": (self.mask_head, MASK_HEADS),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"Config.{name} must be one of {allowed}, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(
                f"Config.num_classes counts the background too, so it must be >= 2, got {self.num_classes}"
            )
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"Config.class_names has {len(self.class_names)} names for num_classes={self.num_classes}"
            )
        if len(self.anchor_sizes) != len(self.aspect_ratios):
            raise ValueError("Config.anchor_sizes and Config.aspect_ratios need one entry per FPN level each")
        if self.mask_positives_per_image < 0:
            raise ValueError(
                "Config.mask_positives_per_image must be 0 (all positives) or more, "
                f"got {self.mask_positives_per_image}"
            )
        if not self.mask_mlp_layers or not all(isinstance(n, int) and n > 0 for n in self.mask_mlp_layers):
            raise ValueError(
                f"Config.mask_mlp_layers must be one or more positive widths, got {self.mask_mlp_layers!r}"
            )
        if not isinstance(self.train_mask_branch, bool):
            raise ValueError(f"Config.train_mask_branch must be a bool, got {self.train_mask_branch!r}")
        if self.mask_overlap_rescore and not self.train_mask_branch:
            raise ValueError(
                "Config.mask_overlap_rescore rescores by the masks: it needs train_mask_branch=True"
            )
        if not 0 <= self.trainable_layers <= 5:
            raise ValueError(f"Config.trainable_layers must be in 0..5, got {self.trainable_layers}")

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (the config itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Every field by name (nested tuples stay tuples; ``json`` writes them as lists)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The fields as indented JSON, as checkpoints store them."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """A config from ``to_dict``'s output, or JSON's (lists for tuples); unknown fields raise."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown Config fields {unknown}")
        return cls(**{k: _tuples(v) for k, v in values.items()})

    @classmethod
    def from_json(cls, text: str) -> "Config":
        """A config from ``to_json``'s text."""
        return cls.from_dict(json.loads(text))


def coco_r50_fpn(num_classes: int = 91, **changes: Any) -> Config:
    """torchvision's ``maskrcnn_resnet50_fpn``: ResNet-50-FPN, 800/1333, the paper's settings."""
    return Config(num_classes=num_classes, **changes)


SHAPES_CLASSES = ("background", "square", "circle", "triangle")


# One piece: each bullet of the docstring explains settings of the one call below, read side by side.
def shapes(**changes: Any) -> Config:
    """A small Mask R-CNN for 128 x 128 Shapes images that trains from scratch on a 2-core CPU.

    Why each change from the COCO preset (``data/shapes_model/README.md`` has the measurements):

    * ResNet-18 with trainable BatchNorm and every stage training: there are no pretrained weights
      to keep, and a small body is what a CPU can train in minutes. An FPN of 64 channels, a
      256-wide box head and two 64-channel mask convolutions: the shapes are simple.
    * 128 px in, not resized up: the objects are 16..64 px (half-sizes 8..32), so anchors of 8..192
      px on the five levels (strides 4..64) cover them; no need for 32..512. Two sizes per level, a
      factor 1.5 apart: with one size per octave an object halfway between two sizes overlaps its
      best anchor by IoU 0.5 at most, under the RPN's 0.7 (+0.018 mask AP, +0.033 box AP).
    * ``aligned=True``: pixel-exact RoIAlign, mask targets and pasting. Objects of 16 px lose a
      visible share of their IoU to torchvision's half-pixel offset (+0.044 mask AP).
    * Fewer proposals in training (250 per level and image, not 2000): an image holds at most a
      handful of objects. 250 proposals at test time; at most 20 detections per image.
    * 160 sampled RoIs per image, at most 24 of them positive (0.15, not 1/4), and the mask head
      trains on at most 16 of those positives (``mask_positives_per_image``): a positive RoI costs
      the mask head a 14 x 14 convolution stack, a negative only the box head's two small layers.
      So negatives are cheap, and many of them are pieces of partly hidden shapes that the
      classifier must learn to reject (112 negatives instead of 48 cut the confident false
      positives on 200 held-out images from 22 to 9); the box head's extra positives, which the
      mask head does not pay for, raised segm AP50 from 0.948 to 0.954 (mean of three seeds).
    * ``mask_overlap_rescore`` stays off, as in the paper's model: lowering a detection's score by
      the share of its mask that better detections hold was worth 0.003 segm AP50 on the shipped
      model's 200 held-out images (appendix A has the experiment; the option is the library's).
    """
    settings = dict(
        num_classes=len(SHAPES_CLASSES),
        class_names=SHAPES_CLASSES,
        backbone="resnet18",
        norm="bn",
        trainable_layers=5,
        fpn_channels=64,
        min_size=128,
        max_size=128,
        anchor_sizes=((8, 12), (16, 24), (32, 48), (64, 96), (128, 192)),
        aligned=True,
        rpn_pre_nms_top_n_train=250,
        rpn_pre_nms_top_n_test=250,
        rpn_post_nms_top_n_train=250,
        rpn_post_nms_top_n_test=250,
        rpn_batch_size_per_image=128,
        representation_size=256,
        mask_layers=(64, 64),
        box_batch_size_per_image=160,
        box_positive_fraction=0.15,
        mask_positives_per_image=16,
        detections_per_img=20,
    )
    settings.update(changes)
    return Config(**settings)
