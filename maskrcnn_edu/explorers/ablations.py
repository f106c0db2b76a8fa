"""Chapter 10's table and figure: the paper's ablations at Shapes scale, beside the paper's.

``benchmarks/ablations.py`` trains every variant from scratch with one recipe and several seeds
and writes ``data/ablations/ablations.json``: per run the COCO metrics on the 200 held-out Shapes
images (``results.runs``), per variant their mean, min and max over the seeds (``results.table``),
and the paper's Table 2 numbers for the same comparisons (``paper``). ``format_ablation_table``
prints ours beside the paper's; ``compare_with_paper`` computes each difference (RoIAlign −
RoIPool, sigmoid − softmax) here and in the paper and says whether the direction agrees and
whether ours is larger than the spread over seeds. A variant the sweep has not reached yet is
reported as missing, never guessed.

The chapter's other two tools have their own modules: ``ablation_images`` (one image, a variant's
detections beside the baseline's) and ``monitor`` (a training run watched live).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "BASELINE", "VARIANT_LABELS", "METRICS", "PAPER_COMPARISONS", "load_report", "variant_names",
    "format_ablation_table", "Comparison", "compare_with_paper", "format_comparisons", "draw_ablation_bars",
]

BASELINE = "roialign_sigmoid"  # the sweep's baseline: RoIAlign in the heads, per-class sigmoid masks
VARIANT_LABELS = {
    "roialign_sigmoid": "RoIAlign + sigmoid (baseline)",
    "roipool": "RoIPool",
    "softmax": "softmax over classes",
}
METRICS = ("AP", "AP50", "AP75")

# Our difference (better - worse variant) against the paper's, for the mask metrics. The paper's
# entries are read from the report's "paper" section: (comparison key, its better and worse row).
PAPER_COMPARISONS = (
    {"name": "RoIAlign − RoIPool", "ours": ("roialign_sigmoid", "roipool"),
     "paper": ("roipool_vs_roialign", "roialign", "roipool")},
    {"name": "sigmoid − softmax", "ours": ("roialign_sigmoid", "softmax"),
     "paper": ("softmax_vs_sigmoid", "sigmoid", "softmax")},
)


def _label(variant: str) -> str:
    return VARIANT_LABELS.get(variant, variant)


# The table ------------------------------------------------------------------------------------------


def load_report(path) -> dict:
    """The JSON that ``benchmarks/ablations.py`` writes, with its ``results.table`` and ``results.runs``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no ablation report at {path}: the older recipe's sweep wrote it "
                         "(`git show 7976f74:benchmarks/ablations.py`)")
    report = json.loads(path.read_text())
    if "results" not in report or "table" not in report["results"]:
        raise ValueError(f"{path} has no results.table: is it a report of benchmarks/ablations.py?")
    return report


def variant_names(report: dict) -> list[str]:
    """The variants the report has results for, the baseline first."""
    table = report["results"]["table"]
    return sorted(table, key=lambda name: (name != BASELINE, list(table).index(name)))


def _points(value: float) -> str:
    return f"{100 * value:.1f}"


def _cell(stats: dict) -> str:
    """``mean (min–max)`` in AP points (x 100, as the paper prints them); one seed: the value alone."""
    if stats["min"] == stats["max"]:
        return _points(stats["mean"])
    return f"{_points(stats['mean'])} ({_points(stats['min'])}–{_points(stats['max'])})"


def format_ablation_table(report: dict) -> str:
    """Our mask AP / AP50 / AP75 and box AP per variant (mean and range over seeds) above the paper's rows."""
    columns = ("segm_AP", "segm_AP50", "segm_AP75", "bbox_AP")
    header = f"{'':34s} {'seeds':>5s}  {'mask AP':>16s} {'AP50':>16s} {'AP75':>16s} {'box AP':>16s}"
    settings = report.get("settings", {})
    lines = [f"here: Shapes, {settings.get('steps', '?')} steps of {settings.get('batch_size', '?')} images "
             f"from scratch, {report.get('test_set', {}).get('images', '?')} held-out images "
             "(mean, and min–max over seeds)", header]
    table = report["results"]["table"]
    for variant in variant_names(report):
        stats = table[variant]
        cells = " ".join(f"{_cell(stats[c]):>16s}" for c in columns)
        lines.append(f"{_label(variant):34s} {len(stats['seeds']):>5d}  {cells}")
    missing = [v for v in VARIANT_LABELS if v not in table]
    if missing:
        lines.append(f"(not measured yet: {', '.join(_label(v) for v in missing)})")
    lines.append("")
    lines.append("paper, Table 2 (COCO minival, mask AP)")
    for comparison in PAPER_COMPARISONS:
        key, better, worse = comparison["paper"]
        entry = report.get("paper", {}).get(key)
        if entry is None:
            continue
        for row in (worse, better):
            values = " ".join(f"{entry[row][m]:>16.1f}" for m in METRICS)
            lines.append(f"{row + ', ' + entry.get('backbone', ''):34s} {'':>5s}  {values}")
    return "\n".join(lines)


@dataclass
class Comparison:
    """One difference of a mask metric between two variants, here and in the paper, in AP points.

    ``ours`` is ``None`` while either variant is missing from the report. ``same_direction``: the two
    differences have the same sign. ``beyond_spread``: the two variants' ranges over seeds do not
    overlap; ``None`` while either has a single seed (no spread to compare with).
    """

    name: str
    metric: str
    ours: float | None
    paper: float | None
    same_direction: bool | None
    beyond_spread: bool | None

    def sentence(self) -> str:
        paper = "?" if self.paper is None else f"{self.paper:+.1f}"
        if self.ours is None:
            return f"{self.name}, mask {self.metric}: not measured yet (paper: {paper})"
        verdict = "same direction" if self.same_direction else "OPPOSITE direction"
        spread = {True: "beyond the seeds' spread", False: "within the seeds' spread",
                  None: "one seed only, no spread to compare with"}[self.beyond_spread]
        return (f"{self.name}, mask {self.metric}: {self.ours:+.1f} points here (paper: {paper}); "
                f"{verdict}, {spread}")


def compare_with_paper(report: dict, metrics=METRICS) -> list[Comparison]:
    """Every comparison of ``PAPER_COMPARISONS`` for every mask metric, ours next to the paper's."""
    table = report["results"]["table"]
    comparisons = []
    for spec in PAPER_COMPARISONS:
        better, worse = spec["ours"]
        key, paper_better, paper_worse = spec["paper"]
        paper_entry = report.get("paper", {}).get(key)
        for metric in metrics:
            paper = (None if paper_entry is None
                     else round(paper_entry[paper_better][metric] - paper_entry[paper_worse][metric], 1))
            if better not in table or worse not in table:
                comparisons.append(Comparison(spec["name"], metric, None, paper, None, None))
                continue
            a, b = table[better][f"segm_{metric}"], table[worse][f"segm_{metric}"]
            ours = 100 * (a["mean"] - b["mean"])
            same = None if paper is None else bool(np.sign(ours) == np.sign(paper))
            seeds = min(len(table[better]["seeds"]), len(table[worse]["seeds"]))
            apart = (a["min"] > b["max"] or b["min"] > a["max"]) if seeds > 1 else None
            comparisons.append(Comparison(spec["name"], metric, round(ours, 1), paper, same, apart))
    return comparisons


def format_comparisons(comparisons: list[Comparison]) -> str:
    return "\n".join(c.sentence() for c in comparisons)


def _paired_differences(runs: list[dict], better: str, worse: str, key: str) -> list[float]:
    """``better - worse`` in AP points for every seed both variants ran (the same batches and initial
    weights)."""
    values = {(r["variant"], r["seed"]): r[key] for r in runs}
    return [100 * (values[(better, seed)] - values[(worse, seed)])
            for (variant, seed) in values if variant == better and (worse, seed) in values]


def _draw_variants(ax, report: dict) -> None:
    """Mask AP, AP50, AP75 of every variant: the mean, a bar from the lowest to the highest seed,
    a dot per run."""
    table, runs = report["results"]["table"], report["results"]["runs"]
    variants = variant_names(report)
    x = np.arange(len(METRICS))
    width = 0.8 / max(len(variants), 1)
    for k, variant in enumerate(variants):
        offset = x + (k - (len(variants) - 1) / 2) * width  # [3] the variant's place in each group
        stats = [table[variant][f"segm_{m}"] for m in METRICS]
        means = np.array([100 * s["mean"] for s in stats])
        errors = [means - [100 * s["min"] for s in stats], [100 * s["max"] for s in stats] - means]
        ax.errorbar(offset, means, yerr=errors, fmt="s", color=f"C{k}", capsize=4, markersize=6,
                    label=f"{_label(variant)} ({len(table[variant]['seeds'])} seeds)")
        for run in (r for r in runs if r["variant"] == variant):
            ax.scatter(offset, [100 * run[f"segm_{m}"] for m in METRICS], color="black", s=6, zorder=3)
    steps = report.get("settings", {}).get("steps", "?")
    ax.set(xticks=x, xticklabels=[f"mask {m}" for m in METRICS], ylabel="AP points",
           title=f"Here: Shapes from scratch, {steps} steps per run")
    ax.legend(fontsize=8, loc="lower center")
    ax.grid(axis="y", alpha=0.3)


def _difference_bars(report: dict) -> list[tuple]:
    """``(label, colour, hatch, [value per metric], [[per-seed values] per metric] or None)`` of each
    comparison, here (if both variants ran) and in the paper (if the report has it)."""
    table, runs = report["results"]["table"], report["results"]["runs"]
    bars = []
    for k, spec in enumerate(PAPER_COMPARISONS):
        better, worse = spec["ours"]
        key, paper_better, paper_worse = spec["paper"]
        if better in table and worse in table:
            means = [100 * (table[better][f"segm_{m}"]["mean"] - table[worse][f"segm_{m}"]["mean"])
                     for m in METRICS]
            seeds = [_paired_differences(runs, better, worse, f"segm_{m}") for m in METRICS]
            bars.append((f"{spec['name']}, here", f"C{k + 1}", "", means, seeds))
        paper = report.get("paper", {}).get(key)
        if paper is not None:
            bars.append((f"{spec['name']}, paper", f"C{k + 1}", "//",
                         [paper[paper_better][m] - paper[paper_worse][m] for m in METRICS], None))
    return bars


def _draw_differences(ax, report: dict) -> None:
    """Each comparison's difference in AP points, here (the mean over seeds, a dot per seed) beside the
    paper's."""
    bars = _difference_bars(report)
    x = np.arange(len(METRICS))
    width = 0.8 / max(len(bars), 1)
    for k, (label, colour, hatch, means, seeds) in enumerate(bars):
        offset = x + (k - (len(bars) - 1) / 2) * width
        ax.bar(offset, means, width, color=colour, alpha=0.35 if hatch else 0.85, hatch=hatch,
               edgecolor=colour, label=label)
        for position, values in zip(offset, seeds or []):
            ax.scatter([position] * len(values), values, color="black", s=8, zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(xticks=x, xticklabels=[f"mask {m}" for m in METRICS], ylabel="difference, AP points",
           title="The paper's choice minus the alternative")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def draw_ablation_bars(report: dict) -> Figure:
    """Left: mask AP, AP50, AP75 of every variant here (the mean, a bar from the lowest to the highest
    seed, a dot per run). Right: each comparison's difference in AP points, here (the mean over seeds,
    a dot per seed) beside the paper's."""
    figure = Figure(figsize=(10, 3.9), layout="constrained")
    values_ax, difference_ax = figure.subplots(1, 2)
    _draw_variants(values_ax, report)
    _draw_differences(difference_ax, report)
    return figure
