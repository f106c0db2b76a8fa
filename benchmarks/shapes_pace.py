"""Shapes pace: seconds per training step of the shipped recipe and of the recipe before, interleaved.

A race (``shapes_race.py``) trains each recipe once, one after another; on a shared machine whose
speed drifts over half an hour, its time ratio drifts with it (two races of the same code here gave
the recipe before 0.95 and 1.32 of ours' time). This benchmark measures only the pace, and measures
it in turns: ``--rounds`` times, ``--steps`` steps of ours, then ``--steps`` of the recipe before,
each from its own trained weights (``runs/race/{ours,before}/last.pt`` when a race left them, so the
proposals and sampled RoIs are those of late training; from scratch otherwise). A slow minute then
slows both alike. It prints each turn's seconds per step, the medians, and what they make of each
recipe's full length (ours: its steps; before: 650):

    python benchmarks/shapes_pace.py [--rounds 4] [--steps 60] [--json benchmarks/results/shapes_pace.json]

``--recipe NAME`` (repeatable) paces recipes of ``benchmarks/shapes_recipes.py`` in place of the
shipped one, each in its turn of every round, each against the recipe before (the first starts
from ``ours/last.pt`` when a race left one, the others from scratch).

Each turn is one ``fit`` call, its data loader's start and one checkpoint write included.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from maskrcnn_edu.training import recipes
from maskrcnn_edu.config import shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.model import MaskRCNN, load_checkpoint
from maskrcnn_edu.training import fit

from report import write_report  # benchmarks/report.py
from shapes_recipes import BEFORE_CONFIG, BEFORE_SETTINGS, RECIPES, recipe_setup, training_set

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--rounds", type=int, default=4)
parser.add_argument("--steps", type=int, default=60, help="steps per turn")
parser.add_argument("--runs", default="runs/race", help="where a race left ours/last.pt and before/last.pt")
parser.add_argument("--json", default="benchmarks/results/shapes_pace.json")
parser.add_argument("--recipe", action="append", choices=sorted(RECIPES), metavar="NAME",
                    help="a recipe of benchmarks/shapes_recipes.py to pace (repeatable; default: "
                         "the shipped one)")


def start_weights(model: MaskRCNN, checkpoint: Path) -> str:
    if not checkpoint.exists():
        return "from scratch"
    model.load_state_dict(load_checkpoint(checkpoint)[0].state_dict())
    return str(checkpoint)


def seconds_per_step(config, weights: dict, settings, train_set) -> float:
    model = MaskRCNN(config)
    model.load_state_dict(weights)
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        fit(model, train_set, out_dir, settings, progress=False)
        return (time.perf_counter() - start) / settings.steps


def runs_to_pace(names: list[str]) -> dict:
    """``{run: (config, settings, training set)}``: each recipe of ``names`` ("ours" for the shipped
    one), then the recipe before, which every other run is compared with."""
    _, settings = recipe_setup(RECIPES["shipped"])
    runs = {}
    for name in names:
        recipe = RECIPES[name]
        runs["ours" if name == "shipped" else name] = (*recipe_setup(recipe), training_set(recipe))
    before_set = ShapesDataset(recipes.SHAPES_TRAIN_IMAGES, seed=recipes.SHAPES_TRAIN_SEED)  # up to 4 shapes
    runs["before"] = (shapes(**BEFORE_CONFIG), dataclasses.replace(settings, **BEFORE_SETTINGS), before_set)
    return runs


def report(args, runs: dict, paces: dict, origin: dict) -> None:
    """Each run's median time a step and its whole recipe's minutes, each against the recipe before;
    printed, and written to ``args.json``."""
    rows = []
    for name, (_, run_settings, _) in runs.items():
        median = statistics.median(paces[name])
        rows.append({"run": name, "recipe_steps": run_settings.steps,
                     "seconds_per_step": [round(p, 4) for p in paces[name]],
                     "median_seconds_per_step": round(median, 4),
                     "recipe_minutes": round(median * run_settings.steps / 60, 2),
                     "weights": origin[name]})
        print(f"{name:7s} median {median:.3f} s/step x {run_settings.steps} steps = "
              f"{rows[-1]['recipe_minutes']:.2f} min")
    before = rows[-1]
    ratios, per_round = {}, {}
    for row in rows[:-1]:
        name = row["run"]
        ratios[name] = round(row["recipe_minutes"] / before["recipe_minutes"], 4)
        per_round[name] = [round(paces[name][i] * row["recipe_steps"]
                                 / (paces["before"][i] * before["recipe_steps"]), 4)
                           for i in range(args.rounds)]
        print(f"{name} / before, the whole recipes: {ratios[name]:.3f} "
              f"(per round: {', '.join(f'{r:.3f}' for r in per_round[name])})")
    write_report(args.json, rows, ratio=ratios, per_round=per_round, rounds=args.rounds,
                 steps_per_turn=args.steps)


def main() -> None:
    args = parser.parse_args()
    runs = runs_to_pace(args.recipe or ["shipped"])
    weights, origin = {}, {}
    first = next(iter(runs))  # it starts from the race's run of ours
    for name, (run_config, _, _) in runs.items():
        torch.manual_seed(0)
        model = MaskRCNN(run_config)
        origin[name] = start_weights(model, Path(args.runs) / ("ours" if name == first else name) / "last.pt")
        weights[name] = model.state_dict()
        print(f"{name}: weights {origin[name]}")

    paces = {name: [] for name in runs}
    for round_index in range(args.rounds):
        for name, (run_config, run_settings, train_set) in runs.items():
            turn = dataclasses.replace(run_settings, steps=args.steps, warmup_steps=0, checkpoint_every=10**9)
            paces[name].append(seconds_per_step(run_config, weights[name], turn, train_set))
        print(f"round {round_index + 1}: " + ", ".join(f"{n} {paces[n][-1]:.3f} s/step" for n in runs))
    report(args, runs, paces, origin)


if __name__ == "__main__":
    main()
