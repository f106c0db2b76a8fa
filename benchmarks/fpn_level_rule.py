"""The FPN level rule on Shapes: COCO's canonical size (224 px) against the same rule scaled to the image.

The FPN paper reads an RoI of side ``s`` from level ``floor(4 + log2(s / 224))``: 224 is ImageNet's
image size, and COCO's images are resized to 800 pixels. The Shapes preset resizes to 128, so with
224 every Shapes RoI (6 to 70 pixels) lands on P2. Scaled to the image, the canonical size is
``224 * 128 / 800 = 35.84``: a 36-pixel shape reads P4, an 18-pixel one P3. This benchmark trains the
shipped recipe (``shapes()``, ``recipes.shapes_schedule()``, ``recipes.shapes_training_set()``) with
each canonical size on ``--seeds`` (the seed draws the initial weights, the batches and the samples)
and scores every run with pycocotools on ``--images`` held-out images of the test seed (3), of which
the first 200 are the test set the README reports. One training at a time; a run whose results are
in ``--json`` is skipped, so the sweep can stop and continue:

    python benchmarks/fpn_level_rule.py [--seeds 0 1 2] [--images 1000] [--json data/fpn_level/fpn_level.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from maskrcnn_edu.config import shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.evaluation.coco import coco_evaluate
from maskrcnn_edu.files import write_json
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.training import fit, recipes

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SIZE = shapes().min_size  # 128
VARIANTS = {
    "coco_224": 224.0,  # the paper's rule as written: every Shapes RoI on P2
    "scaled_to_image": 224.0 * IMAGE_SIZE / 800,  # the same rule for a 128-pixel image
}

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
parser.add_argument("--images", type=int, default=1000, help="held-out images of the test seed to score on")
parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
parser.add_argument("--steps", type=int, help="training steps (default: the recipe's 850)")
parser.add_argument("--json", default=str(ROOT / "data" / "fpn_level" / "fpn_level.json"))


def level_counts(model: MaskRCNN, images: ShapesDataset, count: int = 50) -> dict:
    """Which level the mask head reads for the detections scoring >= 0.5 of the first ``count`` images
    (their boxes, in the 128-pixel input the model sees)."""
    from maskrcnn_edu.roi_ops import fpn_level

    levels = []
    for index in range(min(count, len(images))):
        detections = model.detect([images[index][0]])[0]
        boxes = detections["boxes"][detections["scores"] >= 0.5]
        levels.append(fpn_level(boxes, 2, 5, model.config.roi_canonical_size))
    values, counts = torch.cat(levels).unique(return_counts=True)
    return {f"P{int(v)}": int(c) for v, c in zip(values, counts)}


def run(variant: str, seed: int, test_set: ShapesDataset, steps: int | None) -> dict:
    config = shapes(roi_canonical_size=VARIANTS[variant])
    settings = recipes.shapes_schedule(steps=steps, seed=seed)
    out = ROOT / "runs" / "fpn_level" / f"{variant}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)  # a run cut short starts again from its first step
    torch.manual_seed(seed)  # the initial weights; the settings' seed draws the batches and samples
    model = MaskRCNN(config)
    start = time.perf_counter()
    fit(model, recipes.shapes_training_set(), out, settings, progress=True)
    minutes = (time.perf_counter() - start) / 60
    model.eval()
    metrics, _ = coco_evaluate(model, test_set, progress=True)
    row = {"variant": variant, "canonical_size": VARIANTS[variant], "seed": seed, "steps": settings.steps,
           "train_minutes": round(minutes, 2), "images": len(test_set),
           "detections_by_level": level_counts(model, test_set)}
    for task in ("bbox", "segm"):
        for metric in ("AP", "AP50", "AP75", "APs", "APm"):
            row[f"{task}_{metric}"] = round(metrics[task][metric], 4)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    args = parser.parse_args()
    torch.set_num_threads(2)
    path = Path(args.json)
    report = json.loads(path.read_text()) if path.exists() else {"rows": []}
    report.update(recipe="shapes() + recipes.shapes_schedule() + recipes.shapes_training_set()",
                  test_set=f"ShapesDataset({args.images}, seed={recipes.SHAPES_TEST_SEED})")
    test_set = ShapesDataset(args.images, seed=recipes.SHAPES_TEST_SEED)
    done = {(row["variant"], row["seed"], row["images"], row["steps"]) for row in report["rows"]}
    steps = args.steps or recipes.SHAPES_STEPS
    for seed in args.seeds:
        for variant in args.variants:
            if (variant, seed, args.images, steps) in done:
                continue
            report["rows"].append(run(variant, seed, test_set, steps))
            write_json(path, report)  # after every run: an interrupted sweep keeps what it finished


if __name__ == "__main__":
    main()
