"""The Shapes recipe search: train named recipes one after another and score each the same way.

Each recipe changes the config, the training settings or the training data of the Shapes recipe
as it was before this search (``BEFORE_CONFIG``, ``BEFORE_SETTINGS``: 650 AdamW steps of 8 images),
so that a row means the same whatever the ``shapes()`` preset becomes; ``shipped`` is the preset
and schedule of ``maskrcnn-edu train`` as they are now. Every run starts from the same seed
(``--seed``, 0 by default: the initial weights, the batches and the samplers), trains without
validation, and is scored on

* 200 held-out images of our Shapes and 200 of the seed project's (``variant="keras"``), test seed 3;
* the 20 sample images of ``data/shapes_sample``: how many detections scoring >= 0.7 match no
  object of their class (greedy matching, box IoU >= 0.5; a duplicate counts), and the same count
  on the 200 held-out images of our Shapes (``held_out_confident_misses``), a steadier measure.

Training time is wall-clock on this machine, so compare runs from one quiet session only (never
two trainings at once). Rows are appended to ``--json`` (default
``data/shapes_model/recipes.json``), which ``data/shapes_model/README.md`` tabulates; each run's
final checkpoint is kept as ``runs/recipes/<name>-seed<seed>/last.pt``.

    python benchmarks/shapes_recipes.py base lr2e-3 mix ...
    python benchmarks/shapes_recipes.py --list
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset
from torchvision.transforms import v2

from maskrcnn_edu.training import recipes
from maskrcnn_edu.evaluation.coco import coco_evaluate
from maskrcnn_edu.config import shapes
from maskrcnn_edu.data import CocoDataset, ShapesDataset
from maskrcnn_edu.files import write_json
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.training import fit
from maskrcnn_edu.evaluation.matching import match_boxes

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "shapes_sample"
CONFIDENT = 0.7
# Which search a new row belongs to: 1, the first (its minutes on a machine about twice as fast);
# 2, the second (cpu_bf16, more negative RoIs); 3, the third (more positives for the box head than
# for the mask head); 4, the fourth (after batched_nms went per category past 300 boxes: cheaper
# steps; stricter positives for the box head); 5, the fifth (after RoIAlign's hand-written backward
# and fused AdamW: cheaper steps again; fewer RoIs for the mask head). Minutes compare within one
# search only.
SEARCH = 5


@dataclasses.dataclass
class Recipe:
    """What a run changes from ``maskrcnn-edu train``: config fields, TrainSettings fields, data."""

    note: str
    config: dict = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)
    data: str = "edu"  # "edu", "keras" or "mix" (both, half and half)
    shipped: bool = False  # True: the shapes() preset and recipes.shapes_schedule() as they are, nothing else
    flip: bool = False  # random horizontal flips
    max_shapes: int = 4  # shapes per training image, at most (the test images keep 4)


# The Shapes recipe before this search (the model shipped until then; the ablations of chapter 10
# were measured with it): one anchor size per level, 128 RoIs and 500 proposals per image in
# training, torchvision's unaligned geometry, 650 AdamW steps of 8 at lr 1e-3.
BEFORE_CONFIG = dict(aligned=False, anchor_sizes=((8,), (16,), (32,), (64,), (128,)),
                     box_batch_size_per_image=128,
                     box_positive_fraction=0.25, mask_positives_per_image=0, rpn_pre_nms_top_n_train=500,
                     rpn_post_nms_top_n_train=500, mask_overlap_rescore=False)
BEFORE_SETTINGS = dict(steps=650, batch_size=8, lr=1e-3, channels_last=False, cpu_bf16=False)

TWO_SCALES = ((8, 12), (16, 24), (32, 48), (64, 96), (128, 192))
COMBO = {"aligned": True, "anchor_sizes": TWO_SCALES, "box_batch_size_per_image": 64,
         "rpn_pre_nms_top_n_train": 250, "rpn_post_nms_top_n_train": 250}

# The recipe shipped after the first search (800 float32 steps), which the rows below it change.
SHIPPED_800 = {"lr": 3e-3, "steps": 800, "channels_last": True, "cpu_bf16": False}
# The second search's RoI sample: 128 per image, at most 16 positive (1/8), so 112 negatives, not 48.
NEG112 = {**COMBO, "box_batch_size_per_image": 128, "box_positive_fraction": 0.125}

# The recipe shipped after the second search (NEG112's RoIs, 920 bf16 steps), which the third search changes.
SHIPPED_920 = {**SHIPPED_800, "steps": 920, "cpu_bf16": True}
# The third search: more positive RoIs for the box head, while the mask head keeps training on at most 16.
BOX_POSITIVES = {
    "box32-mask16": {**NEG112, "box_positive_fraction": 0.25, "mask_positives_per_image": 16},
    "box24-mask16": {**NEG112, "box_positive_fraction": 0.1875, "mask_positives_per_image": 16},
    "rois160-box24-mask16": {**NEG112, "box_batch_size_per_image": 160, "box_positive_fraction": 0.15,
                             "mask_positives_per_image": 16},
}

def rois160(note: str, steps: int, **config) -> Recipe:
    """The third search's best RoI sample (160 per image, at most 24 positive, masks on 16) on
    ``shipped-920``'s settings for ``steps`` steps, with ``config`` changed on top."""
    return Recipe(note, config={**BOX_POSITIVES["rois160-box24-mask16"], **config},
                  settings={**SHIPPED_920, "steps": steps}, max_shapes=8)


RECIPES = {
    "shipped": Recipe("the recipe of `maskrcnn-edu train` now", shipped=True),
    "base": Recipe("the recipe before this search: 650 AdamW steps of 8, lr 1e-3"),
    "lr2e-3": Recipe("lr 2e-3", settings={"lr": 2e-3}),
    "lr4e-3": Recipe("lr 4e-3", settings={"lr": 4e-3}),
    "mix": Recipe("train on both variants, half and half", data="mix"),
    "flip": Recipe("random horizontal flips", flip=True),
    "canon112": Recipe("RoIs of 56 px and up read from P3 (canonical size 112)",
                       config={"roi_canonical_size": 112.0}),
    "canon56": Recipe("RoIs of 28 px read from P3, 56 px from P4 (canonical size 56)",
                      config={"roi_canonical_size": 56.0}),
    "anchors2": Recipe("two anchor sizes per level (x1, x1.5)",
                       config={"anchor_sizes": TWO_SCALES, "aspect_ratios": ((0.5, 1.0, 2.0),) * 5}),
    "rois64": Recipe("64 sampled RoIs per image, not 128", config={"box_batch_size_per_image": 64}),
    "fewer-proposals": Recipe("training keeps 250 proposals per level and image, not 500",
                              config={"rpn_pre_nms_top_n_train": 250, "rpn_post_nms_top_n_train": 250}),
    "aligned": Recipe("RoIAlign with the half-pixel correction (aligned=True)", config={"aligned": True}),
    "rpn-fg0.5": Recipe("an anchor is positive from IoU 0.5, not 0.7", config={"rpn_fg_iou_thresh": 0.5}),
    "combo": Recipe("aligned + lr 2e-3 + two anchor sizes + 64 RoIs + 250 proposals",
                    config={"aligned": True, "anchor_sizes": TWO_SCALES, "box_batch_size_per_image": 64,
                            "rpn_pre_nms_top_n_train": 250, "rpn_post_nms_top_n_train": 250},
                    settings={"lr": 2e-3}),
    "combo-lr4e-3": Recipe("combo at lr 4e-3", config=COMBO, settings={"lr": 4e-3}),
    "combo-b4": Recipe("combo with 1300 steps of 4 images", config=COMBO,
                       settings={"lr": 2e-3, "steps": 1300, "batch_size": 4}),
    "combo-mix": Recipe("combo trained on both variants", config=COMBO, settings={"lr": 2e-3}, data="mix"),
    "combo-dense": Recipe("combo on training images of up to 6 shapes", config=COMBO, settings={"lr": 2e-3},
                          max_shapes=6),
    "combo-dense8": Recipe("combo on training images of up to 8 shapes", config=COMBO, settings={"lr": 2e-3},
                           max_shapes=8),
    "combo-dense-750": Recipe("combo-dense for 750 steps (its steps are cheaper than before's)", config=COMBO,
                              settings={"lr": 2e-3, "steps": 750}, max_shapes=6),
    "combo-dense8-750": Recipe("combo-dense8 for 750 steps (its steps are cheaper than before's)",
                               config=COMBO, settings={"lr": 2e-3, "steps": 750}, max_shapes=8),
    "combo-dense12": Recipe("combo on training images of up to 12 shapes", config=COMBO,
                            settings={"lr": 2e-3}, max_shapes=12),
    "d8-pos50": Recipe("combo-dense8-750, channels_last, half of the sampled RoIs positive (not a quarter)",
                       config={**COMBO, "box_positive_fraction": 0.5},
                       settings={"lr": 2e-3, "steps": 750, "channels_last": True}, max_shapes=8),
    "d8-lr3e-3": Recipe("combo-dense8-750, channels_last, lr 3e-3", config=COMBO,
                        settings={"lr": 3e-3, "steps": 750, "channels_last": True}, max_shapes=8),
    "d8-pos50-32": Recipe("d8-pos50 with 32 sampled RoIs per image (16 positive at most, as before)",
                          config={**COMBO, "box_positive_fraction": 0.5, "box_batch_size_per_image": 32},
                          settings={"lr": 2e-3, "steps": 750, "channels_last": True}, max_shapes=8),
    # From the recipe shipped by the search above (``shipped`` as it was: COMBO, lr 3e-3, 800 steps,
    # channels-last, training images of up to 8 shapes).
    "neg112": Recipe("shipped-800, 128 sampled RoIs of which at most 16 positive (1/8): 112 negatives, "
                     "not 48", config=NEG112, settings=SHIPPED_800, max_shapes=8),
    "bf16-1050": Recipe("shipped-800 in bfloat16 autocast (cpu_bf16; 1.3x the steps a second): 1050 steps",
                        config=COMBO, settings={**SHIPPED_800, "steps": 1050, "cpu_bf16": True},
                        max_shapes=8),
    "bf16-neg112-1100": Recipe("bf16-1050 with neg112's RoIs (128, at most 16 positive), 1100 steps",
                               config=NEG112,
                               settings={**SHIPPED_800, "steps": 1100, "cpu_bf16": True}, max_shapes=8),
    "bf16-neg112-1050": Recipe("bf16-neg112-1100 for 1050 steps (the first race: 8.01 min against the "
                               "recipe before's 7.32, too long)",
                               config=NEG112,
                               settings={**SHIPPED_800, "steps": 1050, "cpu_bf16": True}, max_shapes=8),
    "shipped-920": Recipe("bf16-neg112 for 920 steps: the recipe shipped after the second search",
                          config=NEG112, settings=SHIPPED_920, max_shapes=8),
    "box32-mask16": Recipe("shipped-920 with up to 32 positives of the 128 RoIs (1/4) for the box head, of "
                           "which the mask head trains on 16 at most (mask_positives_per_image)",
                           config=BOX_POSITIVES["box32-mask16"], settings=SHIPPED_920, max_shapes=8),
    "box24-mask16": Recipe("box32-mask16 with up to 24 positives of 128 (3/16)",
                           config=BOX_POSITIVES["box24-mask16"], settings=SHIPPED_920, max_shapes=8),
    "rois160-box24-mask16-890": rois160("box24-mask16 with 160 RoIs (24 positive, 136 negative), "
                                        "890 steps", 890),
    "rois160-box24-mask16-860": rois160("rois160-box24-mask16-890 for 860 steps (trained as ours in a "
                                        "fourth race, stopped after it)", 860),
    "rois160-box24-mask16-850": rois160("rois160-box24-mask16-890 for 850 steps (what its race's budget "
                                        "allows; shipped after the third search)", 850),
    "rois160-box24-mask16-790": rois160("rois160-box24-mask16-850 for 790 steps (the budget since the fourth "
                                        "search's NMS: 650 steps of the recipe before x 0.455 / 0.375 s a "
                                        "step)", 790),
    "fg0.6-850": rois160("rois160-box24-mask16-850 with the box head's positives from IoU 0.6, not 0.5 (a "
                         "box across two objects, or on a fragment of one, becomes background)", 850,
                         box_fg_iou_thresh=0.6, box_bg_iou_thresh=0.6),
    "rois160-box24-mask12-850": rois160("rois160-box24-mask16-850 with the mask head on 12 of the "
                                        "positives, not 16 (the mask head costs a step about half what the "
                                        "backbone costs)", 850, mask_positives_per_image=12),
    "rois160-box24-mask12-900": rois160("rois160-box24-mask12-850 for 900 steps", 900,
                                        mask_positives_per_image=12),
    "rois256-box24-mask12-850": rois160("rois160-box24-mask12-850 with 256 RoIs (24 positive, 232 negative: "
                                        "more pieces of hidden shapes to reject, which the mask head does "
                                        "not pay for)", 850,
                                        box_batch_size_per_image=256, box_positive_fraction=24 / 256,
                                        mask_positives_per_image=12),
    "neg112-proposals120-1000": Recipe("shipped-920 with 120 candidates per level into the RPN's NMS in "
                                       "training (not 250), 1000 steps (trained as ours in a third race, "
                                       "stopped after it)",
                                       config={**NEG112, "rpn_pre_nms_top_n_train": 120},
                                       settings={**SHIPPED_920, "steps": 1000}, max_shapes=8),
    "combo-770": Recipe("combo for 770 steps (its time per step is lower)", config=COMBO,
                        settings={"lr": 2e-3, "steps": 770}),
    "batch4x1300": Recipe("1300 steps of 4 images", settings={"steps": 1300, "batch_size": 4}),
    "batch16x325": Recipe("325 steps of 16 images, lr 2e-3",
                          settings={"steps": 325, "batch_size": 16, "lr": 2e-3}),
}


def training_set(recipe: Recipe):
    if recipe.shipped:
        return recipes.shapes_training_set()
    transforms = v2.RandomHorizontalFlip() if recipe.flip else None
    make = lambda variant: ShapesDataset(recipes.SHAPES_TRAIN_IMAGES, seed=recipes.SHAPES_TRAIN_SEED,
                                         variant=variant, transforms=transforms, max_shapes=recipe.max_shapes)
    if recipe.data == "mix":
        return ConcatDataset([make("edu"), make("keras")])
    return make(recipe.data)


def confident_false_positives(target: dict, boxes, labels, scores) -> int:
    """How many of one image's detections scoring >= 0.7 match no object of their class (greedy, box
    IoU >= 0.5). Matching goes best score first, so the weaker detections left out cannot change it."""
    confident = torch.as_tensor(scores) >= CONFIDENT
    boxes, labels, scores = (torch.as_tensor(v)[confident] for v in (boxes, labels, scores))
    return len(match_boxes(target["boxes"], target["labels"], boxes, labels, scores).false_positives)


def confident_misses(model) -> int:
    """Detections scoring >= 0.7 on the 20 sample images that match no object of their class."""
    sample = CocoDataset(SAMPLE / "images", SAMPLE / "annotations.json")
    model.eval()
    count = 0
    with torch.no_grad():
        for i in range(len(sample)):
            image, target = sample[i]
            found = model([image])[0]
            count += confident_false_positives(target, found["boxes"], found["labels"], found["scores"])
    return count


def held_out_confident_misses(results: list[dict], dataset) -> int:
    """The same count as ``confident_misses``, from COCO-format ``results`` on a held-out Shapes set:
    a less noisy measure than 20 images (200 images hold about 480 objects)."""
    by_image = defaultdict(list)
    for r in results:
        by_image[r["image_id"]].append(r)
    count = 0
    for image_id, found in by_image.items():
        boxes = torch.tensor([r["bbox"] for r in found], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        labels = torch.tensor([r["category_id"] for r in found])
        scores = torch.tensor([r["score"] for r in found])
        count += confident_false_positives(dataset[image_id][1], boxes, labels, scores)
    return count


def recipe_setup(recipe: Recipe, seed: int = 0):
    """The model config and training settings of ``recipe`` (no intermediate checkpoints)."""
    if recipe.shipped:
        config, changes = shapes(), {}
    else:
        config, changes = shapes(**{**BEFORE_CONFIG, **recipe.config}), {**BEFORE_SETTINGS, **recipe.settings}
    return config, dataclasses.replace(recipes.shapes_schedule(seed=seed), checkpoint_every=10**9, **changes)


def run(name: str, recipe: Recipe, seed: int = 0) -> dict:
    config, settings = recipe_setup(recipe, seed)
    torch.manual_seed(seed)  # the initial weights; the settings' seed draws the batches and samples
    model = MaskRCNN(config)
    start = time.perf_counter()
    fit(model, training_set(recipe), ROOT / "runs" / "recipes" / f"{name}-seed{seed}", settings,
        val_dataset=None, progress=True)
    minutes = (time.perf_counter() - start) / 60
    row = {"recipe": name, "note": recipe.note, "train_minutes": round(minutes, 2), "steps": settings.steps,
           "batch_size": settings.batch_size, "search": SEARCH, "seed": seed}
    for variant in ("edu", "keras"):
        test_set = ShapesDataset(recipes.SHAPES_TEST_IMAGES, seed=recipes.SHAPES_TEST_SEED, variant=variant)
        metrics, results = coco_evaluate(model, test_set, progress=False)
        for metric in ("AP", "AP50", "AP75"):
            row[f"{variant}_segm_{metric}"] = round(metrics["segm"][metric], 4)
        row[f"{variant}_bbox_AP"] = round(metrics["bbox"]["AP"], 4)
        if variant == "edu":
            row["held_out_confident_misses"] = held_out_confident_misses(results, test_set)
    row["sample_confident_misses"] = confident_misses(model)
    print(json.dumps(row))
    return row


def markdown_table(rows: list[dict]) -> str:
    """The rows as the Markdown table of ``data/shapes_model/README.md``."""
    lines = ["| search | recipe | what changes | steps x batch | train min | segm AP | segm AP50 | keras "
             "segm AP | keras segm AP50 | sample misses | held-out misses |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        held_out = r.get("held_out_confident_misses", "")
        seed = f" (seed {r['seed']})" if r.get("seed", 0) else ""
        lines.append(f"| {r.get('search', 1)} | `{r['recipe']}`{seed} | {r['note']} "
                     f"| {r['steps']} x {r['batch_size']} "
                     f"| {r['train_minutes']:.2f} | {r['edu_segm_AP']:.3f} | {r['edu_segm_AP50']:.3f} "
                     f"| {r['keras_segm_AP']:.3f} | {r['keras_segm_AP50']:.3f} "
                     f"| {r['sample_confident_misses']} | {held_out} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", help="names of RECIPES, run in this order")
    parser.add_argument("--json", default=str(ROOT / "data" / "shapes_model" / "recipes.json"))
    parser.add_argument("--list", action="store_true", help="print the recipes and stop")
    parser.add_argument("--seed", type=int, default=0,
                        help="initial weights, batches and samples (default 0)")
    parser.add_argument("--table", action="store_true",
                        help="print --json's rows as a Markdown table and stop")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.json).read_text())))
        return
    if args.list or not args.recipes:
        for name, recipe in RECIPES.items():
            print(f"{name:<14} {recipe.note}")
        return
    unknown = [n for n in args.recipes if n not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipes {unknown}; --list shows them")
    path = Path(args.json)
    for name in args.recipes:
        row = run(name, RECIPES[name], args.seed)
        rows = json.loads(path.read_text()) if path.exists() else []
        write_json(path, rows + [row])


if __name__ == "__main__":
    main()
