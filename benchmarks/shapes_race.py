"""Shapes race: our Mask R-CNN against torchvision's, same config, same start, same data, same loop.

Three runs, one after another in one process, each trained with ``maskrcnn_edu.training.fit`` (the
same batches and seed) and scored on the 200 held-out Shapes images (test seed), both variants:

1. ours on the recipe of ``maskrcnn-edu train`` (the ``shapes()`` preset, ``recipes.shapes_schedule()``);
2. torchvision's ``MaskRCNN`` class on the same recipe: assembled from its own modules to the
   same shape, starting from the same weights. Two settings cannot follow: torchvision's model
   has no ``aligned`` geometry (its RoIAlign, mask targets and pasting keep the half-pixel offset
   and whole-pixel boxes), so it runs the recipe with ``aligned=False``; and its mask head cannot
   be capped (``mask_positives_per_image``), so it trains on all of the box head's positive RoIs
   (up to 24 per image, where ours trains on 16 of them). Our inference's last step, the Shapes
   preset's ``rescore_by_mask_overlap``, is given to it by a hook on its detections;
3. ours on the recipe this one replaced (``BEFORE``: 650 steps at lr 1e-3, one anchor size per
   level, 128 RoIs, 500 proposals, ``aligned=False``, training images of up to 4 shapes), the
   training time the new recipe must not exceed.

Prints wall-clock training time and COCO AP; writes JSON.

    python benchmarks/shapes_race.py [--steps N] [--json benchmarks/results/shapes_race.json]

``--recipe NAME`` races a recipe of ``benchmarks/shapes_recipes.py`` in place of the shipped one
(ours and torchvision's model both train it; the recipe before stays), to measure a candidate's
time against the budget before it becomes the preset.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch
import torchvision
from torchvision.models.detection import MaskRCNN as TorchvisionMaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maskrcnn_edu.training import recipes
from maskrcnn_edu.backbone import STAGE_CHANNELS
from maskrcnn_edu.config import shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.evaluation.coco import coco_evaluate
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.training import fit
from maskrcnn_edu.masks import rescore_by_mask_overlap
from maskrcnn_edu.weights import torchvision_key

from report import write_report  # benchmarks/report.py
from shapes_recipes import (BEFORE_CONFIG, BEFORE_SETTINGS, RECIPES,  # benchmarks/shapes_recipes.py
                            confident_misses, held_out_confident_misses, recipe_setup, training_set)


def torchvision_model(config) -> torch.nn.Module:
    """torchvision's MaskRCNN class, built from its own parts to the shape of our ``config``."""
    resnet = getattr(torchvision.models, config.backbone)(weights=None, norm_layer=torch.nn.BatchNorm2d)
    channels = list(STAGE_CHANNELS[config.backbone])
    backbone = BackboneWithFPN(resnet, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}, channels,
                               config.fpn_channels, extra_blocks=LastLevelMaxPool())
    c = config
    levels = ["0", "1", "2", "3"]
    model = TorchvisionMaskRCNN(
        backbone, num_classes=None, min_size=c.min_size, max_size=c.max_size,
        rpn_anchor_generator=AnchorGenerator(c.anchor_sizes, c.aspect_ratios),
        rpn_pre_nms_top_n_train=c.rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test=c.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=c.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=c.rpn_post_nms_top_n_test,
        rpn_nms_thresh=c.rpn_nms_thresh, rpn_fg_iou_thresh=c.rpn_fg_iou_thresh,
        rpn_bg_iou_thresh=c.rpn_bg_iou_thresh,
        rpn_batch_size_per_image=c.rpn_batch_size_per_image, rpn_positive_fraction=c.rpn_positive_fraction,
        box_roi_pool=MultiScaleRoIAlign(levels, c.box_roi_size, c.sampling_ratio,
                                        canonical_scale=int(c.roi_canonical_size)),
        mask_roi_pool=MultiScaleRoIAlign(levels, c.mask_roi_size, c.sampling_ratio,
                                         canonical_scale=int(c.roi_canonical_size)),
        box_head=TwoMLPHead(c.fpn_channels * c.box_roi_size**2, c.representation_size),
        box_predictor=FastRCNNPredictor(c.representation_size, c.num_classes),
        box_score_thresh=c.box_score_thresh, box_nms_thresh=c.box_nms_thresh,
        box_detections_per_img=c.detections_per_img,
        box_fg_iou_thresh=c.box_fg_iou_thresh, box_bg_iou_thresh=c.box_bg_iou_thresh,
        box_batch_size_per_image=c.box_batch_size_per_image, box_positive_fraction=c.box_positive_fraction,
        mask_head=MaskRCNNHeads(c.fpn_channels, list(c.mask_layers), 1),
        mask_predictor=MaskRCNNPredictor(c.mask_layers[-1], c.mask_layers[-1], c.num_classes),
    )
    model.config = config  # so that our checkpoints (which store the config) can save it
    return model


def same_start(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Give torchvision's model our initial weights (our names are a renaming of theirs)."""
    own = ours.state_dict()
    theirs.load_state_dict({k: own[torchvision_key(k)] for k in theirs.state_dict()})


def rescore_like_ours(theirs: torch.nn.Module) -> None:
    """Give torchvision's model our inference's last step, ``rescore_by_mask_overlap`` (a forward
    hook on its detections in eval mode), so that both models are scored on the same recipe."""
    def hook(module, inputs, output):
        return output if module.training else [rescore_by_mask_overlap(d)[0] for d in output]
    theirs.register_forward_hook(hook)


def race(name, model, settings, train_set, test_sets, out_dir):
    start = time.perf_counter()
    fit(model, train_set, out_dir, settings, val_dataset=None, progress=True)
    minutes = (time.perf_counter() - start) / 60
    row = {"model": name, "train_minutes": round(minutes, 2), "steps": settings.steps, "lr": settings.lr}
    for variant, test_set in test_sets.items():
        metrics, results = coco_evaluate(model, test_set, progress=False)
        prefix = "" if variant == "edu" else f"{variant}_"
        for kind in ("bbox", "segm"):
            for metric in ("AP", "AP50", "AP75"):
                row[f"{prefix}{kind}_{metric}"] = round(metrics[kind][metric], 4)
        if variant == "edu":
            row["held_out_confident_misses"] = held_out_confident_misses(results, test_set)
    row["sample_confident_misses"] = confident_misses(model)
    print(row)
    return row


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None,
                        help="default: the recipe's (the shipped one: recipes.SHAPES_STEPS)")
    parser.add_argument("--recipe", default="shipped", choices=sorted(RECIPES), metavar="NAME",
                        help="a recipe of benchmarks/shapes_recipes.py to race in place of the shipped one")
    parser.add_argument("--json", default="benchmarks/results/shapes_race.json")
    parser.add_argument("--out", default="runs/race",
                        help="each run's last.pt goes to OUT/<ours|theirs|before>")
    return parser.parse_args()


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'model':<30} {'minutes':>8} {'bbox AP':>8} {'segm AP':>8} {'segm AP50':>10} "
          f"{'keras segm AP50':>16} {'confident misses (200 / sample)':>32}")
    for r in rows:
        print(f"{r['model']:<30} {r['train_minutes']:>8.2f} {r['bbox_AP']:>8.3f} {r['segm_AP']:>8.3f} "
              f"{r['segm_AP50']:>10.3f} {r['keras_segm_AP50']:>16.3f} "
              f"{r['held_out_confident_misses']:>25} / {r['sample_confident_misses']}")
    print(f"time ratios: torchvision / ours {rows[1]['train_minutes'] / rows[0]['train_minutes']:.2f}, "
          f"before / ours {rows[2]['train_minutes'] / rows[0]['train_minutes']:.2f}")


def main() -> None:
    args = parse_args()
    recipe = RECIPES[args.recipe]
    config, settings = recipe_setup(recipe)
    if args.steps is not None:
        settings = dataclasses.replace(settings, steps=args.steps)
    train_set = training_set(recipe)
    # up to 4 shapes, as the test images
    before_train_set = ShapesDataset(recipes.SHAPES_TRAIN_IMAGES, seed=recipes.SHAPES_TRAIN_SEED)
    test_sets = {v: ShapesDataset(recipes.SHAPES_TEST_IMAGES, seed=recipes.SHAPES_TEST_SEED, variant=v)
                 for v in ("edu", "keras")}
    torch.manual_seed(0)
    ours = MaskRCNN(config)
    theirs = torchvision_model(config.replace(aligned=False))
    same_start(ours, theirs)
    if config.mask_overlap_rescore:
        rescore_like_ours(theirs)
    torch.manual_seed(0)
    before = MaskRCNN(shapes(**BEFORE_CONFIG))
    before_settings = dataclasses.replace(settings, **BEFORE_SETTINGS)
    rows = []
    rows.append(race("maskrcnn_edu (readable ops)", ours, settings, train_set, test_sets, f"{args.out}/ours"))
    rows.append(race("torchvision", theirs, settings, train_set, test_sets, f"{args.out}/theirs"))
    rows.append(race("maskrcnn_edu, recipe before", before, before_settings, before_train_set, test_sets,
                     f"{args.out}/before"))
    print_rows(rows)
    write_report(args.json, rows, recipe=args.recipe, config=config.to_dict(),
                 settings=dataclasses.asdict(settings))


if __name__ == "__main__":
    main()
