"""How fast the data layer feeds a model: images per second.

* Shapes generation: ``ShapesDataset[i]`` for ``--shapes-images`` images, in this process, on
  one core (torch limited to one thread; numpy draws on one anyway).
* COCO loading: ``CocoDataset`` over the shipped ``data/shapes_sample`` (20 PNG images + RLE
  masks) through a ``DataLoader`` (batch size 4, ``collate``) with 0 and with 2 worker processes.
  Workers are started once (``persistent_workers``) and one epoch warms up before the timed
  ``--epochs``, so the rate is the steady state, not the start-up of the workers.

Each rate is the median of ``--repeats`` runs.

    python benchmarks/data.py [--repeats 3] [--json benchmarks/results/data.json]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from maskrcnn_edu.data import CocoDataset, ShapesDataset, collate

from report import write_report  # benchmarks/report.py

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "shapes_sample"


def shapes_rate(num_images: int) -> float:
    dataset = ShapesDataset(num_images, seed=0)
    start = time.perf_counter()
    for i in range(num_images):
        dataset[i]
    return num_images / (time.perf_counter() - start)


def coco_loader_rate(num_workers: int, epochs: int) -> float:
    dataset = CocoDataset(SAMPLE / "images", SAMPLE / "annotations.json")
    loader = DataLoader(
        dataset, batch_size=4, collate_fn=collate, num_workers=num_workers, persistent_workers=num_workers > 0
    )
    for _ in loader:  # warm-up epoch: starts the workers
        pass
    start = time.perf_counter()
    for _ in range(epochs):
        for _ in loader:
            pass
    return epochs * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20, help="timed passes over the 20-image COCO sample")
    parser.add_argument("--json", default="benchmarks/results/data.json", help="where to write the numbers")
    args = parser.parse_args()
    torch.set_num_threads(1)

    cases = {
        "Shapes generation (1 core)": lambda: shapes_rate(args.shapes_images),
        "CocoDataset + DataLoader, 0 workers": lambda: coco_loader_rate(0, args.epochs),
        "CocoDataset + DataLoader, 2 workers": lambda: coco_loader_rate(2, args.epochs),
    }
    results = []
    print(f"{'case':<38} {'images/s':>10}")
    for name, run in cases.items():
        rate = statistics.median(run() for _ in range(args.repeats))
        results.append({"case": name, "images_per_s": round(rate, 1)})
        print(f"{name:<38} {rate:>10.1f}")

    write_report(
        args.json, results, repeats=args.repeats,
        workload=f"Shapes 128 px, {args.shapes_images} images; CocoDataset on data/shapes_sample "
        f"(20 images, 128 px), batch 4, {args.epochs} timed epochs after one warm-up",
    )


if __name__ == "__main__":
    main()
