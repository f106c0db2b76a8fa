"""The paper's ablations on the shipped recipe, read for the final chapter: our table beside the paper's.

``benchmarks/ablations.py`` writes ``data/ablations/shipped_recipe.json``: every run's COCO metrics
(``results.runs``), each variant's mean, min and max over the seeds (``results.table``), the paper's
numbers by table and row (``paper``), and the comparisons to make (``comparisons``: our better and
worse variant, the paper's better and worse row or the gain its text states, and the task, ``segm``
for mask AP or ``bbox`` for box AP). This module only reads that file:

* ``format_variant_table``: each variant's mean (min-max over the seeds) in AP points, as the paper
  prints them, with the paper's table it stands for;
* ``compare_with_paper``: for each comparison and metric, our difference (and each seed's), the
  paper's, whether the directions agree, and whether ours is beyond the seeds' spread;
* ``format_comparisons`` and ``agreement_counts``: the same as text, and tallied.

Nothing is guessed: a variant the sweep has not run yet, or a comparison the paper has no number for,
is reported as such. (Chapter 09's first sweep, on the older recipe, has its own reader: ``ablations``.)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["VARIANT_LABELS", "load_shipped_report", "format_variant_table", "PaperComparison",
           "compare_with_paper", "format_comparisons", "agreement_counts"]

VARIANT_LABELS = {
    "baseline": "shipped recipe (ResNet-18, sigmoid, RoIAlign, FCN)",
    "resnet50": "ResNet-50 backbone",
    "resnet34": "ResNet-34 backbone",
    "softmax": "softmax over classes",
    "roipool": "RoIPool",
    "roiwarp": "RoIWarp",
    "unaligned": "RoIAlign without the half-pixel shift",
    "mlp_mask_head": "MLP mask head",
    "box_only": "no mask branch (box AP only)",
}
TABLE_OF_VARIANT = {"resnet50": "2(a)", "resnet34": "2(a)", "softmax": "2(b)", "roipool": "2(c), 2(d)",
                    "roiwarp": "2(c)", "unaligned": "-", "mlp_mask_head": "2(e)", "box_only": "3"}
TASK_NAMES = {"segm": "mask", "bbox": "box"}


def _label(variant: str) -> str:
    return VARIANT_LABELS.get(variant, variant)


def load_shipped_report(path) -> dict:
    """The JSON ``benchmarks/ablations.py`` writes, checked for the sections this module reads."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no ablation report at {path}: run `python benchmarks/ablations.py` to make it")
    report = json.loads(path.read_text())
    missing = [key for key in ("results", "paper", "comparisons") if key not in report]
    if missing or "table" not in report["results"]:
        raise ValueError(f"{path} lacks {missing or ['results.table']}: "
                         "is it the report of benchmarks/ablations.py?")
    return report


def _points(value: float) -> str:
    return f"{100 * value:.1f}"


def _cell(stats: dict | None) -> str:
    """``mean (min-max)`` in AP points; one seed: the value alone; no value: ``-``."""
    if stats is None:
        return "-"
    if stats["min"] == stats["max"]:
        return _points(stats["mean"])
    return f"{_points(stats['mean'])} ({_points(stats['min'])}-{_points(stats['max'])})"


def format_variant_table(report: dict, columns=("segm_AP", "segm_AP50", "segm_AP75", "bbox_AP")) -> str:
    """Each variant the sweep ran, the baseline first: its seeds, then every column's mean and range
    over the seeds in AP points, and the paper's table it tests; last, the variants not run yet."""
    table = report["results"]["table"]
    order = sorted(table, key=lambda name: (name != "baseline", list(table).index(name)))
    header = f"{'variant':44s} {'seeds':>5s}" + "".join(f"{c:>18s}" for c in columns) + "  paper"
    lines = [header]
    for variant in order:
        cells = "".join(f"{_cell(table[variant].get(c)):>18s}" for c in columns)
        lines.append(f"{_label(variant):44s} {len(table[variant]['seeds']):>5d}{cells}  "
                     f"{TABLE_OF_VARIANT.get(variant, '')}")
    missing = [v for v in report.get("variants", {}) if v not in table]
    if missing:
        lines.append(f"(not run yet: {', '.join(_label(v) for v in missing)})")
    return "\n".join(lines)


@dataclass
class PaperComparison:
    """One difference (the paper's choice minus the alternative) in AP points, here and in the paper.

    ``ours`` and ``paper`` are ``None`` where that side is missing (a variant not run yet; a comparison
    the paper has no number for). ``same_direction``: both differences have the same sign (``None``
    when either is missing or exactly 0). ``beyond_spread``: the two variants' ranges over the seeds do
    not overlap (``None`` with fewer than two seeds on either side). ``seeds``: our difference seed by
    seed, for the seeds both variants ran (the same batches and initial weights).
    """

    name: str
    task: str
    metric: str
    ours: float | None
    paper: float | None
    source: str
    same_direction: bool | None
    beyond_spread: bool | None
    seeds: list[float] = field(default_factory=list)

    def sentence(self) -> str:
        kind = f"{TASK_NAMES[self.task]} {self.metric}"
        paper = "no number" if self.paper is None else f"{self.paper:+.1f} ({self.source})"
        if self.ours is None:
            return f"{self.name}, {kind}: not measured yet (paper: {paper})"
        verdict = {True: "same direction", False: "OPPOSITE direction", None: "no direction to compare"}
        spread = {True: "beyond the seeds' spread", False: "within the seeds' spread",
                  None: "no spread to compare with"}
        return (f"{self.name}, {kind}: {self.ours:+.1f} points here (paper: {paper}); "
                f"{verdict[self.same_direction]}, {spread[self.beyond_spread]}")


def _paper_difference(report: dict, spec: dict | None, key: str) -> tuple[float | None, str]:
    """The paper's difference for ``key`` (e.g. ``segm_AP``) and where it is printed."""
    if spec is None:
        return None, "not in the paper"
    if "text" in spec:
        value = report["paper"]["text"].get(spec["text"], {}).get(key)
        return value, f"text, {spec['text']}"
    table = report["paper"]["tables"][spec["table"]]
    better, worse = table["rows"][spec["better"]].get(key), table["rows"][spec["worse"]].get(key)
    name = " ".join(table["title"].split()[:2])  # "Table 2(c)"
    source = f"{name}: {spec['better']} vs {spec['worse']}"
    return (None if better is None or worse is None else round(better - worse, 1)), source


def _direction(ours: float | None, paper: float | None) -> bool | None:
    if ours is None or paper is None or ours == 0 or paper == 0:
        return None
    return (ours > 0) == (paper > 0)


def _seed_differences(runs: list[dict], better: str, worse: str, key: str) -> list[float]:
    values = {(r["variant"], r["seed"]): r.get(key) for r in runs}
    return [round(100 * (values[(better, s)] - values[(worse, s)]), 1)
            for (variant, s) in values if variant == better and values.get((worse, s)) is not None
            and values[(better, s)] is not None]


def compare_with_paper(report: dict, metrics=("AP", "AP50", "AP75")) -> list[PaperComparison]:
    """Every comparison of the report, for every metric of its task, ours beside the paper's."""
    table, runs = report["results"]["table"], report["results"]["runs"]
    comparisons = []
    for spec in report["comparisons"]:
        better, worse = spec["ours"]
        for metric in metrics:
            key = f"{spec['task']}_{metric}"
            paper, source = _paper_difference(report, spec["paper"], key)
            a, b = table.get(better, {}).get(key), table.get(worse, {}).get(key)
            if a is None or b is None:
                comparisons.append(PaperComparison(spec["name"], spec["task"], metric, None, paper, source,
                                                   None, None))
                continue
            ours = round(100 * (a["mean"] - b["mean"]), 1)
            several = min(len(table[better]["seeds"]), len(table[worse]["seeds"])) > 1
            apart = (a["min"] > b["max"] or b["min"] > a["max"]) if several else None
            comparisons.append(PaperComparison(spec["name"], spec["task"], metric, ours, paper, source,
                                               _direction(ours, paper), apart,
                                               _seed_differences(runs, better, worse, key)))
    return comparisons


def format_comparisons(comparisons: list[PaperComparison]) -> str:
    return "\n".join(c.sentence() for c in comparisons)


def agreement_counts(comparisons: list[PaperComparison]) -> dict[str, int]:
    """How many comparisons agree with the paper's direction, disagree, cannot tell (a side missing
    or a tie), and, of those that agree or disagree, how many are beyond the seeds' spread."""
    decided = [c for c in comparisons if c.same_direction is not None]
    return {"agree": sum(c.same_direction for c in decided),
            "disagree": sum(not c.same_direction for c in decided),
            "undecided": len(comparisons) - len(decided),
            "beyond_spread": sum(bool(c.beyond_spread) for c in decided)}
