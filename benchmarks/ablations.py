"""The Mask R-CNN paper's ablations (Table 2 a-e, Table 3) on the shipped Shapes recipe.

Every variant is the shipped model's recipe with one change: the config ``maskrcnn-edu train`` builds
(``config.shapes()`` with the Shapes class names), ``recipes.shapes_schedule()`` (850 AdamW steps of 8
images) and ``recipes.shapes_training_set()``. Each run trains from scratch on ``--seeds`` (the seed
draws the initial weights, the batches and the samples) and is scored with pycocotools on ``--images``
held-out images of the test seed (``recipes.SHAPES_TEST_SEED``; at least 1,000: on 200, AP50 swings by
about 0.02 from seed to seed).

    variant         change from the shipped recipe                 the paper's table
    baseline        none: ResNet-18, per-class sigmoid, RoIAlign   every comparison's other side
                    (half-pixel aligned), FCN mask head
    resnet50        backbone="resnet50"                            2(a), depth
    resnet34        backbone="resnet34" (when --variants names it) 2(a), depth
    softmax         mask_loss="softmax"                            2(b)
    roipool         roi_op="pool"                                  2(c), 2(d)
    roiwarp         roi_op="warp"                                  2(c), middle row
    unaligned       aligned=False (torchvision's geometry)         none: the paper's RoIAlign had no shift
    mlp_mask_head   mask_head="mlp" (fc 1024, 1024, K*28*28)       2(e)
    box_only        train_mask_branch=False (scored on boxes)      3, the multi-task gain

About 12 minutes a run on a 2-core CPU (850 steps at 0.8 s, 1,000 images scored in 35 s), ResNet-50
about 17: the default sweep, 8 variants x 3 seeds, takes about 5 hours.

The report, ``data/ablations/shipped_recipe.json``, holds the baseline ``Config`` and ``TrainSettings``,
checks that they are the shipped model's (``data/shapes_model/model.pt``'s stored config) and the
recipe's, every run's COCO metrics, each variant's mean and range over the seeds, and the paper's
numbers for each comparison with their table and row. It is written (atomically) after every run, so an
interrupted sweep keeps what it finished; ``--resume`` skips the runs already recorded. Each variant's
detections on the first ``--keep-images`` held-out images (its first seed) go to
``data/ablations/shipped_recipe_detections.json`` for the explorer. One training at a time.

    python benchmarks/ablations.py [--seeds 0 1 2] [--images 1000] [--variants ...] [--resume]
    python benchmarks/ablations.py --smoke      # 2 steps, 8 images, one seed, a temporary folder
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from maskrcnn_edu.config import Config, shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.evaluation.coco import coco_evaluate
from maskrcnn_edu.files import write_json
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.training import fit, recipes
from maskrcnn_edu.weights import read_checkpoint

from report import write_report  # benchmarks/report.py

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "ablations"
REPORT_NAME, DETECTIONS_NAME = "shipped_recipe.json", "shipped_recipe_detections.json"
SHIPPED_MODEL = ROOT / "data" / "shapes_model" / "model.pt"

VARIANTS = {
    "baseline": {},
    "resnet50": {"backbone": "resnet50"},
    "resnet34": {"backbone": "resnet34"},
    "softmax": {"mask_loss": "softmax"},
    "roipool": {"roi_op": "pool"},
    "roiwarp": {"roi_op": "warp"},
    "unaligned": {"aligned": False},
    "mlp_mask_head": {"mask_head": "mlp"},
    "box_only": {"train_mask_branch": False},
}
DEFAULT_VARIANTS = [name for name in VARIANTS if name != "resnet34"]  # 8: ResNet-34 if the budget allows
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")

# The paper: He, Gkioxari, Dollár, Girshick, "Mask R-CNN", arXiv:1703.06870v3. Table 2 is mask AP on
# COCO minival (Table 2d also box AP); Table 3 is box AP on test-dev. Rows as the tables print them.
PAPER = {
    "source": "K. He, G. Gkioxari, P. Dollár, R. Girshick, Mask R-CNN, ICCV 2017, arXiv:1703.06870v3",
    "tables": {
        "2a": {"title": "Table 2(a) Backbone Architecture", "data": "COCO minival, mask AP", "rows": {
            "ResNet-50-C4": {"segm_AP": 30.3, "segm_AP50": 51.2, "segm_AP75": 31.5},
            "ResNet-101-C4": {"segm_AP": 32.7, "segm_AP50": 54.2, "segm_AP75": 34.3},
            "ResNet-50-FPN": {"segm_AP": 33.6, "segm_AP50": 55.2, "segm_AP75": 35.3},
            "ResNet-101-FPN": {"segm_AP": 35.4, "segm_AP50": 57.3, "segm_AP75": 37.5},
            "ResNeXt-101-FPN": {"segm_AP": 36.7, "segm_AP50": 59.5, "segm_AP75": 38.9}}},
        "2b": {"title": "Table 2(b) Multinomial vs. Independent Masks (ResNet-50-C4)",
               "data": "COCO minival, mask AP", "rows": {
                   "softmax": {"segm_AP": 24.8, "segm_AP50": 44.1, "segm_AP75": 25.1},
                   "sigmoid": {"segm_AP": 30.3, "segm_AP50": 51.2, "segm_AP75": 31.5}}},
        "2c": {"title": "Table 2(c) RoIAlign (ResNet-50-C4, stride 16)", "data": "COCO minival, mask AP",
               "rows": {
                   "RoIPool (max)": {"segm_AP": 26.9, "segm_AP50": 48.8, "segm_AP75": 26.4},
                   "RoIWarp (bilinear, max)": {"segm_AP": 27.2, "segm_AP50": 49.2, "segm_AP75": 27.1},
                   "RoIWarp (bilinear, ave)": {"segm_AP": 27.1, "segm_AP50": 48.9, "segm_AP75": 27.1},
                   "RoIAlign (aligned, bilinear, max)": {"segm_AP": 30.2, "segm_AP50": 51.0,
                                                         "segm_AP75": 31.8},
                   "RoIAlign (aligned, bilinear, ave)": {"segm_AP": 30.3, "segm_AP50": 51.2,
                                                         "segm_AP75": 31.5}}},
        "2d": {"title": "Table 2(d) RoIAlign (ResNet-50-C5, stride 32)",
               "data": "COCO minival, mask and box AP", "rows": {
                   "RoIPool": {"segm_AP": 23.6, "segm_AP50": 46.5, "segm_AP75": 21.6,
                               "bbox_AP": 28.2, "bbox_AP50": 52.7, "bbox_AP75": 26.9},
                   "RoIAlign": {"segm_AP": 30.9, "segm_AP50": 51.8, "segm_AP75": 32.1,
                                "bbox_AP": 34.0, "bbox_AP50": 55.3, "bbox_AP75": 36.4}}},
        "2e": {"title": "Table 2(e) Mask Branch (ResNet-50-FPN)", "data": "COCO minival, mask AP", "rows": {
            "MLP fc: 1024-1024-80x28^2": {"segm_AP": 31.5, "segm_AP50": 53.7, "segm_AP75": 32.8},
            "MLP fc: 1024-1024-1024-80x28^2": {"segm_AP": 31.5, "segm_AP50": 54.0, "segm_AP75": 32.6},
            "FCN conv: 256-256-256-256-256-80": {"segm_AP": 33.6, "segm_AP50": 55.2, "segm_AP75": 35.3}}},
        "3": {"title": "Table 3 Object detection single-model results (ResNet-101-FPN)",
              "data": "COCO test-dev, box AP", "rows": {
                  "Faster R-CNN, RoIAlign": {"bbox_AP": 37.3, "bbox_AP50": 59.6, "bbox_AP75": 40.3,
                                             "bbox_APs": 19.8, "bbox_APm": 40.2, "bbox_APl": 48.8},
                  "Mask R-CNN": {"bbox_AP": 38.2, "bbox_AP50": 60.3, "bbox_AP75": 41.7,
                                 "bbox_APs": 20.1, "bbox_APm": 41.1, "bbox_APl": 50.2}}},
    },
    # Said in section 4.2's text, with no table: "RoIAlign shows a gain of 1.5 mask AP and 0.5 box AP
    # when used with FPN".
    "text": {"4.2 RoIAlign with FPN": {"segm_AP": 1.5, "bbox_AP": 0.5}},
}

# Each comparison: our (better, worse) variants, the paper's (table, better row, worse row) or a gain
# its text states, and the task ("segm" mask AP, "bbox" box AP). The paper's choice is "better".
COMPARISONS = [
    {"name": "depth: ResNet-50 - ResNet-18", "task": "segm", "ours": ["resnet50", "baseline"],
     "paper": {"table": "2a", "better": "ResNet-101-FPN", "worse": "ResNet-50-FPN"}},
    {"name": "depth: ResNet-34 - ResNet-18", "task": "segm", "ours": ["resnet34", "baseline"],
     "paper": {"table": "2a", "better": "ResNet-101-FPN", "worse": "ResNet-50-FPN"}},
    {"name": "sigmoid - softmax", "task": "segm", "ours": ["baseline", "softmax"],
     "paper": {"table": "2b", "better": "sigmoid", "worse": "softmax"}},
    {"name": "RoIAlign - RoIPool", "task": "segm", "ours": ["baseline", "roipool"],
     "paper": {"table": "2c", "better": "RoIAlign (aligned, bilinear, ave)", "worse": "RoIPool (max)"}},
    {"name": "RoIAlign - RoIWarp", "task": "segm", "ours": ["baseline", "roiwarp"],
     "paper": {"table": "2c", "better": "RoIAlign (aligned, bilinear, ave)",
               "worse": "RoIWarp (bilinear, ave)"}},
    {"name": "RoIWarp - RoIPool", "task": "segm", "ours": ["roiwarp", "roipool"],
     "paper": {"table": "2c", "better": "RoIWarp (bilinear, ave)", "worse": "RoIPool (max)"}},
    {"name": "RoIAlign - RoIPool, stride 32", "task": "segm", "ours": ["baseline", "roipool"],
     "paper": {"table": "2d", "better": "RoIAlign", "worse": "RoIPool"}},
    {"name": "RoIAlign - RoIPool, box AP", "task": "bbox", "ours": ["baseline", "roipool"],
     "paper": {"table": "2d", "better": "RoIAlign", "worse": "RoIPool"}},
    {"name": "RoIAlign - RoIPool, with FPN", "task": "segm", "ours": ["baseline", "roipool"],
     "paper": {"text": "4.2 RoIAlign with FPN"}},
    {"name": "half-pixel aligned - unaligned", "task": "segm", "ours": ["baseline", "unaligned"],
     "paper": None},  # not in the paper: its RoIAlign had no half-pixel shift (detectron2 added it)
    {"name": "FCN - MLP mask head", "task": "segm", "ours": ["baseline", "mlp_mask_head"],
     "paper": {"table": "2e", "better": "FCN conv: 256-256-256-256-256-80",
               "worse": "MLP fc: 1024-1024-80x28^2"}},
    {"name": "box AP with - without the mask branch", "task": "bbox", "ours": ["baseline", "box_only"],
     "paper": {"table": "3", "better": "Mask R-CNN", "worse": "Faster R-CNN, RoIAlign"}},
]

# TrainSettings fields that do not make the recipe: each run's seed is its own.
SETTINGS_NOT_COMPARED = ("seed",)


def baseline_config() -> Config:
    """What ``maskrcnn-edu train`` builds for Shapes: ``shapes()`` with the training set's class names."""
    names = tuple(recipes.shapes_training_set().class_names)
    return shapes().replace(num_classes=len(names), class_names=names)


def recipe_checks(config: Config, settings, shipped: Path = SHIPPED_MODEL) -> dict:
    """Whether the baseline is the shipped model's config and the recipe's settings, field by field.

    The shipped checkpoint stores its config but not its training settings, so the settings are held
    to ``recipes.shapes_schedule()``. Fields the checkpoint predates are read with their defaults, as
    ``MaskRCNN.from_checkpoint`` reads them; they are listed.
    """
    stored = read_checkpoint(shipped)["config"]
    ours, theirs = config.to_dict(), Config.from_dict(stored).to_dict()
    config_differences = {k: [ours[k], theirs[k]] for k in ours if ours[k] != theirs[k]}
    recipe = dataclasses.asdict(recipes.shapes_schedule())
    used = dataclasses.asdict(settings)
    settings_differences = {k: [used[k], recipe[k]] for k in used
                            if k not in SETTINGS_NOT_COMPARED and used[k] != recipe[k]}
    return {
        "config_equals_shipped_model": not config_differences,
        "config_differences": config_differences,  # field: [ours, the shipped model's]
        "config_fields_not_compared": [],
        "config_fields_the_checkpoint_predates": sorted(set(ours) - set(stored)),
        "settings_equal_recipe": not settings_differences,
        "settings_differences": settings_differences,  # field: [ours, the recipe's]
        "settings_fields_not_compared": list(SETTINGS_NOT_COMPARED),
    }


def train_and_score(variant: str, seed: int, config: Config, settings, test_set, scratch: Path
                    ) -> tuple[dict, list[dict]]:
    """One run: a fresh model (initial weights from ``seed``) trained with the recipe and scored ->
    (the row of metrics, the COCO results)."""
    torch.manual_seed(seed)  # the initial weights; the settings' seed draws the batches and samples
    model = MaskRCNN(config.replace(**VARIANTS[variant]))
    start = time.perf_counter()
    fit(model, recipes.shapes_training_set(), scratch / f"{variant}-seed{seed}", settings, progress=True)
    minutes = (time.perf_counter() - start) / 60
    metrics, results = coco_evaluate(model, test_set, progress=True)
    row = {"variant": variant, "seed": seed, "steps": settings.steps, "images": len(test_set),
           "train_minutes": round(minutes, 2)}
    for task in metrics:  # "bbox" and "segm"; "bbox" alone for the box-only model
        for name in METRICS:
            value = metrics[task][name]
            row[f"{task}_{name}"] = None if value is None else round(value, 4)
    return row, results


def summarise(rows: list[dict]) -> dict:
    """Per variant: the seeds, and the mean, min and max over them of every metric it has."""
    table = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = [r for r in rows if r["variant"] == variant]
        table[variant] = {"seeds": [r["seed"] for r in runs]}
        keys = [k for k in runs[0] if k.startswith(("bbox_", "segm_"))]
        for key in keys:
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                table[variant][key] = {"mean": round(statistics.fmean(values), 4), "min": min(values),
                                       "max": max(values)}
    return table


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, help="held-out images of the test seed to score on (1000)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    parser.add_argument("--steps", type=int, help="training steps (default: the recipe's 850)")
    parser.add_argument("--keep-images", type=int, default=12,
                        help="held-out images whose detections are kept")
    parser.add_argument("--out", type=Path, help=f"the folder for the two JSON files (default: {OUT})")
    parser.add_argument("--resume", action="store_true", help="skip the runs already in the report")
    parser.add_argument("--smoke", action="store_true",
                        help="2 steps, 8 images, the first seed, a temporary folder (unless given otherwise)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.images, args.seeds = args.steps or 2, args.images or 8, args.seeds[:1]
        args.out = args.out or Path(tempfile.mkdtemp(prefix="ablations-smoke-"))
    args.images, args.out = args.images or 1000, args.out or OUT
    return args


def load_previous(path: Path, resume: bool, fixed: dict) -> tuple[list[dict], bool]:
    """The runs already recorded at ``path`` (``--resume``) -> (rows, whether a report was there).
    Refuses to mix recipes, and to overwrite a report without ``--resume``."""
    if not path.exists():
        return [], False
    report = json.loads(path.read_text())
    rows = report.get("results", {}).get("runs", [])
    if not resume:
        if rows:
            raise SystemExit(f"{path} already holds {len(rows)} runs: pass --resume to continue the sweep, "
                             "or move the file away to start again")
        return [], True
    for key, value in fixed.items():
        if json.loads(json.dumps(value, default=str)) != report.get(key):
            raise SystemExit(f"{path} was measured with another {key}: it cannot be resumed with this one")
    return rows, True


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(2)
    config = baseline_config()
    settings = recipes.shapes_schedule(steps=args.steps)
    test_set = ShapesDataset(args.images, seed=recipes.SHAPES_TEST_SEED)
    report_path, detections_path = args.out / REPORT_NAME, args.out / DETECTIONS_NAME
    fixed = {"baseline_config": config.to_dict(), "train_settings": dataclasses.asdict(settings),
             "test_set": {"images": len(test_set), "seed": recipes.SHAPES_TEST_SEED}}
    rows, _ = load_previous(report_path, args.resume, fixed)
    detections = json.loads(detections_path.read_text()) if args.resume and detections_path.exists() else {}
    done = {(r["variant"], r["seed"]) for r in rows}
    details = dict(recipe="config.shapes() (with the Shapes class names) + recipes.shapes_schedule() + "
                          "recipes.shapes_training_set(); each variant changes the config only",
                   **fixed, checks=recipe_checks(config, settings), variants=VARIANTS, paper=PAPER,
                   comparisons=COMPARISONS)
    keep = set(range(min(args.keep_images, len(test_set))))
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:  # seed-major: an interrupted sweep has every variant of the first seed
            for variant in args.variants:
                if (variant, seed) in done:
                    continue
                print(f"--- {variant}, seed {seed}: {settings.steps} steps of {settings.batch_size} images",
                      flush=True)
                run_settings = dataclasses.replace(settings, seed=seed)
                row, results = train_and_score(variant, seed, config, run_settings, test_set, Path(scratch))
                print(json.dumps(row), flush=True)
                rows.append(row)
                if variant not in detections:  # the first seed run of each variant
                    detections[variant] = [r for r in results if r["image_id"] in keep]
                    write_json(detections_path, detections)
                write_report(str(report_path), {"runs": rows, "table": summarise(rows)}, **details)


if __name__ == "__main__":
    main()
