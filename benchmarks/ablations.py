"""The Mask R-CNN paper's Table 2 ablations, at Shapes scale, measured here.

Every variant trains from scratch with the same recipe and budget (the Shapes recipe *before* the
recipe search of ``data/shapes_model/README.md``, ``shapes_recipes.BEFORE_CONFIG`` at lr 1e-3, for
``--steps`` AdamW steps of ``--batch-size`` images: the stored results were measured with it), the
same batches, and one initial weight draw per seed; each is scored with pycocotools on the 200
held-out Shapes images:

* ``roialign_sigmoid``: the model as shipped (RoIAlign, per-class sigmoid masks) -- the baseline;
* ``roipool``: Fast R-CNN's quantized RoIPool in the box and mask heads (paper, Table 2c/d);
* ``softmax``: one softmax over the classes per mask pixel instead of per-class sigmoids (Table 2b).

(Table 2e, an MLP mask head against the FCN one, is not run: the library's mask head is the FCN
only, and adding a second head for one ablation would not be clean.)

Results are written after every run (so an interrupted sweep keeps what it finished, and
``--resume`` skips the runs already there) to ``data/ablations/ablations.json``, with each
variant's detections on the first ``--keep-images`` held-out images (its first seed) in
``data/ablations/detections.json`` for chapter 09's explorer.

    python benchmarks/ablations.py [--steps 650] [--seeds 0 1] [--resume]
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

from maskrcnn_edu.training import recipes
from maskrcnn_edu.evaluation.coco import coco_evaluate
from maskrcnn_edu.config import shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.files import write_json
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.training import fit

from shapes_recipes import BEFORE_CONFIG, BEFORE_SETTINGS  # benchmarks/shapes_recipes.py

from report import write_report  # benchmarks/report.py

VARIANTS = {
    "roialign_sigmoid": {},
    "roipool": {"roi_op": "pool"},
    "softmax": {"mask_loss": "softmax"},
}
METRICS = ("AP", "AP50", "AP75")

# The paper's Table 2 (COCO minival, mask AP / AP50 / AP75), for the same comparisons.
PAPER = {
    "roipool_vs_roialign": {
        "backbone": "ResNet-50-C5, stride 32",
        "roipool": {"AP": 23.6, "AP50": 46.5, "AP75": 21.6},
        "roialign": {"AP": 30.9, "AP50": 51.8, "AP75": 32.1},
    },
    "softmax_vs_sigmoid": {
        "backbone": "ResNet-50-C4",
        "softmax": {"AP": 24.8, "AP50": 44.1, "AP75": 25.1},
        "sigmoid": {"AP": 30.3, "AP50": 51.2, "AP75": 31.5},
    },
}

# the repository's data/, from any working directory
OUT = Path(__file__).resolve().parents[1] / "data" / "ablations"


def train_and_score(variant: str, seed: int, settings, train_set, test_set, scratch: Path):
    """One run: a fresh model (initial weights drawn from ``seed``), trained and scored -> (row, results)."""
    torch.manual_seed(seed)
    model = MaskRCNN(shapes(**{**BEFORE_CONFIG, **VARIANTS[variant]}))
    start = time.perf_counter()
    fit(model, train_set, scratch / f"{variant}_{seed}", dataclasses.replace(settings, seed=seed),
        progress=True)
    minutes = (time.perf_counter() - start) / 60
    metrics, results = coco_evaluate(model, test_set, progress=False)
    row = {"variant": variant, "seed": seed, "train_minutes": round(minutes, 2)}
    for kind in ("bbox", "segm"):
        for name in METRICS:
            row[f"{kind}_{name}"] = round(metrics[kind][name], 4)
    return row, results


def summarise(rows: list[dict]) -> dict:
    """Per variant: mean and spread (min, max) of every metric over the seeds."""
    table = {}
    for variant in VARIANTS:
        runs = [r for r in rows if r["variant"] == variant]
        if not runs:
            continue
        table[variant] = {"seeds": [r["seed"] for r in runs]}
        for key in [f"{k}_{m}" for k in ("bbox", "segm") for m in METRICS]:
            values = [r[key] for r in runs]
            table[variant][key] = {"mean": round(statistics.fmean(values), 4), "min": min(values),
                                   "max": max(values)}
    return table


def print_table(table: dict) -> None:
    print(f"\n{'variant':<18} {'mask AP':>16} {'mask AP50':>16} {'mask AP75':>16} {'box AP':>16}")
    for variant, stats in table.items():
        cells = [stats[k] for k in ("segm_AP", "segm_AP50", "segm_AP75", "bbox_AP")]
        print(f"{variant:<18} "
              + " ".join(f"{c['mean']:.3f} ({c['min']:.3f}-{c['max']:.3f})".rjust(16) for c in cells))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=BEFORE_SETTINGS["steps"])
    parser.add_argument("--batch-size", type=int, default=BEFORE_SETTINGS["batch_size"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--keep-images", type=int, default=12,
                        help="held-out images whose detections are kept")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--resume", action="store_true", help="skip the runs already in the JSON")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    schedule = recipes.shapes_schedule(args.steps, args.batch_size, BEFORE_SETTINGS["lr"])
    settings = dataclasses.replace(schedule, checkpoint_every=10**9,
                                   channels_last=BEFORE_SETTINGS["channels_last"],
                                   cpu_bf16=BEFORE_SETTINGS["cpu_bf16"])
    train_set = ShapesDataset(recipes.SHAPES_TRAIN_IMAGES, seed=recipes.SHAPES_TRAIN_SEED)
    test_set = ShapesDataset(recipes.SHAPES_TEST_IMAGES, seed=recipes.SHAPES_TEST_SEED)
    results_path, detections_path = args.out / "ablations.json", args.out / "detections.json"
    rows, detections = [], {}
    if args.resume and results_path.exists():
        rows = json.loads(results_path.read_text())["results"]["runs"]
        detections = json.loads(detections_path.read_text()) if detections_path.exists() else {}
    done = {(r["variant"], r["seed"]) for r in rows}

    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:  # seed-major: an interrupted sweep has every variant of the first seed
            for variant in args.variants:
                if (variant, seed) in done:
                    continue
                print(f"--- {variant}, seed {seed}: {settings.steps} steps of {settings.batch_size} images")
                row, results = train_and_score(variant, seed, settings, train_set, test_set, Path(scratch))
                print(row)
                rows.append(row)
                if variant not in detections:  # the first seed run of each variant
                    kept = set(range(args.keep_images))
                    detections[variant] = [r for r in results if r["image_id"] in kept]
                    write_json(detections_path, detections)
                table = summarise(rows)
                write_report(
                    str(results_path), {"runs": rows, "table": table}, paper=PAPER,
                    settings=dataclasses.asdict(settings), variants=VARIANTS,
                    test_set={"images": len(test_set), "seed": recipes.SHAPES_TEST_SEED},
                )
    print_table(summarise(rows))


if __name__ == "__main__":
    main()
