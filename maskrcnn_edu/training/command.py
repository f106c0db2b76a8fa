"""What ``maskrcnn-edu train`` trains on and starts from: the data (Shapes, COCO 2017, or any
COCO-format set), the recipe's schedule, and the initial weights (a checkpoint, or ImageNet weights
for the ResNet body).

The recipe follows the config: ``--config shapes`` trains with the Shapes schedule (AdamW, 850
steps), ``coco_r50_fpn`` with torchvision's COCO schedule, whatever the data. So fine-tuning the
shipped Shapes model on one's own COCO-format set is ``--dataset coco --ann-file A --image-dir D
--config shapes --init data/shapes_model/model.pt``.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from ..data import CocoDataset, ShapesDataset, train_transforms
from ..weights import load_imagenet_body, load_torchvision, read_state_dict, select_classes
from .folder import RUN_FILES
from .recipes import SHAPES_VAL_IMAGES, SHAPES_VAL_SEED, coco_schedule, shapes_schedule, shapes_training_set

__all__ = ["coco_split", "training_data", "require_pretrained", "initial_weights", "check_run_folder",
           "PRETRAINED_HELP"]

PRETRAINED_HELP = (
    "torchvision's ImageNet ResNet-50 file, resnet50-0676ba61.pth (ResNet50_Weights.IMAGENET1K_V2; "
    "torchvision saves it in ~/.cache/torch/hub/checkpoints/, or download it from "
    "https://download.pytorch.org/models/resnet50-0676ba61.pth)")


def coco_split(data_dir, split: str, ann_file=None, image_dir=None, train: bool = False,
               options: tuple[str, str] = ("--ann-file", "--image-dir")) -> CocoDataset:
    """A CocoDataset from the standard 2017 layout under ``data_dir``, or from explicit paths (given
    by the command-line ``options``, which the errors name)."""
    explicit = (ann_file is not None, image_dir is not None)
    if ann_file is None or image_dir is None:
        if data_dir is None:
            raise ValueError(f"--dataset coco needs --data-dir (or {options[0]} and {options[1]})")
        root = Path(data_dir)
        if not root.is_dir():
            raise ValueError(f"--data-dir {root} is not a folder")
        ann_file = ann_file or root / "annotations" / f"instances_{split}2017.json"
        image_dir = image_dir or root / f"{split}2017"
    for option, path, given in zip(options, (ann_file, image_dir), explicit):
        if not Path(path).exists():
            raise ValueError(f"{option} {path} does not exist" if given else f"{path} does not exist "
                             f"(expected the COCO 2017 layout: annotations/, {split}2017/)")
    return CocoDataset(image_dir, ann_file, keep_empty=not train,
                       transforms=train_transforms() if train else None)


def training_data(args: argparse.Namespace, recipe: str):
    """``(train_set, val_set, settings, group_ids)`` for ``args``: the data ``--dataset`` names and
    the schedule of ``recipe`` ("shapes" or "coco"). COCO-format data is batched in aspect-ratio
    groups (wide and tall images apart); without validation data ``val_set`` is None."""
    if args.dataset == "shapes":
        train_set, group_ids = shapes_training_set(), None
        val_set = ShapesDataset(SHAPES_VAL_IMAGES, seed=SHAPES_VAL_SEED)
    else:
        train_set = coco_split(args.data_dir, "train", args.ann_file, args.image_dir, train=True)
        images = [train_set.coco.imgs[i] for i in train_set.image_ids]
        group_ids = torch.tensor([int(image["width"] >= image["height"]) for image in images])
        has_val = args.data_dir is not None or args.val_ann_file is not None or args.val_image_dir is not None
        val_set = coco_split(args.data_dir, "val", args.val_ann_file, args.val_image_dir,
                             options=("--val-ann-file", "--val-image-dir")) if has_val else None
    if recipe == "shapes":
        settings = shapes_schedule(args.steps, args.batch_size, args.lr, args.seed)
    else:
        batch_size = 16 if args.batch_size is None else args.batch_size
        settings = coco_schedule(len(train_set), batch_size, args.steps, args.lr, args.seed)
    return train_set, val_set, settings, group_ids


def require_pretrained(args: argparse.Namespace, recipe: str) -> None:
    """The COCO recipe refuses to start from random weights: its frozen conv1 and layer1 and its
    26 epochs assume an ImageNet-trained body. Checked before any data is read."""
    if args.init and args.backbone_weights:
        raise ValueError("--init and --backbone-weights both set the backbone's weights: give one")
    if recipe == "coco" and not (args.init or args.backbone_weights):
        raise ValueError(
            "the COCO recipe starts from ImageNet weights, as every reference recipe does: from random "
            "ones its frozen conv1 and layer1 never learn, and 26 epochs are not enough. Pass "
            f"--backbone-weights FILE, {PRETRAINED_HELP}, or --init CHECKPOINT")


def initial_weights(model, args: argparse.Namespace, train_set) -> None:
    """``--backbone-weights`` (ImageNet weights for the ResNet body, the rest as initialised) or
    ``--init`` (our checkpoint's or torchvision's Mask R-CNN weights; torchvision's 91 COCO class
    rows are cut down to the dataset's categories, as its predictors are indexed by category id)."""
    if args.backbone_weights:
        load_imagenet_body(model, args.backbone_weights)
    elif args.init:
        state = read_state_dict(args.init)
        class_rows = state.get("roi_heads.box_predictor.cls_score.weight")
        num_classes = model.config.num_classes
        if args.dataset == "coco" and class_rows is not None and len(class_rows) == 91 and num_classes != 91:
            rows = [0, *[train_set.label_to_category_id[label] for label in range(1, num_classes)]]
            state = select_classes(state, rows)
        load_torchvision(model, state)  # our own checkpoints' keys pass through unchanged


def check_run_folder(out: str, resume: bool, overwrite: bool) -> None:
    """Refuse to train over another run's files in ``out`` (checkpoints replaced, two runs in one
    TensorBoard folder), unless ``--resume`` continues that run or ``--overwrite`` removes its files."""
    found = [name for name in (*RUN_FILES, "tensorboard") if (Path(out) / name).exists()]
    if not found or resume:
        return
    if not overwrite:
        raise ValueError(f"--out {out} holds another run ({', '.join(found)}): continue it with --resume, "
                         "choose a fresh --out, or pass --overwrite to remove its files and start again")
    for name in found:
        path = Path(out) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
