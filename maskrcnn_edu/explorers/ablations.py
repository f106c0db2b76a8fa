"""Chapter 08's explorer and figures: the paper's ablations at Shapes scale, and a training run watched live.

**The ablation table.** ``benchmarks/ablations.py`` trains every variant from scratch with one
recipe and several seeds and writes ``data/ablations/ablations.json``: per run the COCO metrics on
the 200 held-out Shapes images (``results.runs``), per variant their mean, min and max over the
seeds (``results.table``), and the paper's Table 2 numbers for the same comparisons (``paper``).
``format_ablation_table`` prints ours beside the paper's; ``compare_with_paper`` computes each
difference (RoIAlign − RoIPool, sigmoid − softmax) here and in the paper and says whether the
direction agrees and whether ours is larger than the spread over seeds. A variant the sweep has
not reached yet is reported as missing, never guessed.

**A variant's detections beside the baseline's.** The sweep also keeps every variant's detections on
the first held-out images (``data/ablations/detections.json``: variant -> COCO results with RLE
masks). ``compare_image`` matches one image's detections of a variant and of the baseline to the
ground truth by *mask* IoU (``match_masks``: best score first, same class, the best free object),
and ``ablation_view`` draws ground truth, baseline and variant side by side with a caption of
counts and matches; ``ablation_explorer`` wraps it in a variant menu and image and score sliders.

**Watching a run.** ``fit`` calls ``evaluate_fn(model, dataset)`` at every validation.
``TrainingMonitor`` is such a function: it scores the validation set (without touching the random
state that training draws from, so the run stays the one ``maskrcnn-edu train`` makes), and, with a
forward hook on the model, records the five losses of every training step; after each validation
it calls back, e.g. to redraw ``draw_training_progress`` in a notebook.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from pycocotools import mask as mask_utils

from ..visualize import class_colors, draw_boxes, draw_masks, greedy_match, show_image
from .shell import Explorer, View

__all__ = [
    "BASELINE", "VARIANT_LABELS", "METRICS", "PAPER_COMPARISONS", "load_report", "variant_names",
    "format_ablation_table", "Comparison", "compare_with_paper", "format_comparisons", "draw_ablation_bars",
    "Instances", "instances_from_results", "MaskMatches", "match_masks", "ImageResult", "compare_image",
    "AblationView", "ablation_view", "ablation_explorer",
    "TrainingMonitor", "draw_training_progress",
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
        raise ValueError(f"no ablation report at {path}: run `python benchmarks/ablations.py` to make it")
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
        return f"{self.name}, mask {self.metric}: {self.ours:+.1f} points here (paper: {paper}); {verdict}, {spread}"


def compare_with_paper(report: dict, metrics=METRICS) -> list[Comparison]:
    """Every comparison of ``PAPER_COMPARISONS`` for every mask metric, ours next to the paper's."""
    table = report["results"]["table"]
    comparisons = []
    for spec in PAPER_COMPARISONS:
        better, worse = spec["ours"]
        key, paper_better, paper_worse = spec["paper"]
        paper_entry = report.get("paper", {}).get(key)
        for metric in metrics:
            paper = None if paper_entry is None else round(paper_entry[paper_better][metric] - paper_entry[paper_worse][metric], 1)
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
    """``better - worse`` in AP points for every seed both variants ran (the same batches and initial weights)."""
    values = {(r["variant"], r["seed"]): r[key] for r in runs}
    return [100 * (values[(better, seed)] - values[(worse, seed)])
            for (variant, seed) in values if variant == better and (worse, seed) in values]


def draw_ablation_bars(report: dict) -> Figure:
    """Left: mask AP, AP50, AP75 of every variant here (the mean, a bar from the lowest to the highest
    seed, a dot per run). Right: each comparison's difference in AP points, here (the mean over seeds,
    a dot per seed) beside the paper's."""
    figure = Figure(figsize=(10, 3.9), layout="constrained")
    values_ax, difference_ax = figure.subplots(1, 2)
    table, runs = report["results"]["table"], report["results"]["runs"]
    variants = variant_names(report)
    x = np.arange(len(METRICS))
    width = 0.8 / max(len(variants), 1)
    for k, variant in enumerate(variants):
        offset = x + (k - (len(variants) - 1) / 2) * width
        stats = [table[variant][f"segm_{m}"] for m in METRICS]
        means = np.array([100 * s["mean"] for s in stats])
        errors = [means - [100 * s["min"] for s in stats], [100 * s["max"] for s in stats] - means]
        values_ax.errorbar(offset, means, yerr=errors, fmt="s", color=f"C{k}", capsize=4, markersize=6,
                           label=f"{_label(variant)} ({len(table[variant]['seeds'])} seeds)")
        for run in (r for r in runs if r["variant"] == variant):
            values_ax.scatter(offset, [100 * run[f"segm_{m}"] for m in METRICS], color="black", s=6, zorder=3)
    values_ax.set(xticks=x, xticklabels=[f"mask {m}" for m in METRICS], ylabel="AP points",
                  title=f"Here: Shapes from scratch, {report.get('settings', {}).get('steps', '?')} steps per run")
    values_ax.legend(fontsize=8, loc="lower center")
    values_ax.grid(axis="y", alpha=0.3)

    bars = []  # (label, colour, hatch, [value per metric], [[per-seed values] per metric] or None)
    for k, spec in enumerate(PAPER_COMPARISONS):
        better, worse = spec["ours"]
        key, paper_better, paper_worse = spec["paper"]
        if better in table and worse in table:
            means = [100 * (table[better][f"segm_{m}"]["mean"] - table[worse][f"segm_{m}"]["mean"]) for m in METRICS]
            seeds = [_paired_differences(runs, better, worse, f"segm_{m}") for m in METRICS]
            bars.append((f"{spec['name']}, here", f"C{k + 1}", "", means, seeds))
        paper = report.get("paper", {}).get(key)
        if paper is not None:
            bars.append((f"{spec['name']}, paper", f"C{k + 1}", "//",
                         [paper[paper_better][m] - paper[paper_worse][m] for m in METRICS], None))
    width = 0.8 / max(len(bars), 1)
    for k, (label, colour, hatch, means, seeds) in enumerate(bars):
        offset = x + (k - (len(bars) - 1) / 2) * width
        difference_ax.bar(offset, means, width, color=colour, alpha=0.35 if hatch else 0.85, hatch=hatch,
                          edgecolor=colour, label=label)
        for position, values in zip(offset, seeds or []):
            difference_ax.scatter([position] * len(values), values, color="black", s=8, zorder=3)
    difference_ax.axhline(0, color="black", linewidth=0.8)
    difference_ax.set(xticks=x, xticklabels=[f"mask {m}" for m in METRICS], ylabel="difference, AP points",
                      title="The paper's choice minus the alternative")
    difference_ax.legend(fontsize=8)
    difference_ax.grid(axis="y", alpha=0.3)
    return figure


# One image: a variant's detections beside the baseline's --------------------------------------------


@dataclass
class Instances:
    """Detections of one image, best score first: ``boxes [D, 4]`` (x0, y0, x1, y1), ``labels [D]``,
    ``scores [D]``, ``masks [D, H, W]`` bool."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def instances_from_results(results: list[dict], image_id: int, size: tuple[int, int],
                           score_threshold: float = 0.0) -> Instances:
    """The COCO results of ``image_id`` scoring at least ``score_threshold``, decoded (masks from RLE).

    ``size = (H, W)`` gives the mask shape when there is no detection to read it from.
    """
    kept = [r for r in results if r["image_id"] == image_id and r["score"] >= score_threshold]
    kept.sort(key=lambda r: -r["score"])
    height, width = size
    if not kept:
        return Instances(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, height, width), bool))
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in kept)], dtype=np.float64)
    masks = mask_utils.decode([r["segmentation"] for r in kept]).transpose(2, 0, 1).astype(bool)  # [D, H, W]
    return Instances(boxes, np.array([r["category_id"] for r in kept], dtype=np.int64),
                     np.array([r["score"] for r in kept], dtype=np.float64), masks)


@dataclass(frozen=True)
class MaskMatches:
    """Objects matched to detections by mask IoU (``match_masks``).

    ``pairs [M, 2]``: ``(object, detection)`` indices, in the order they were made (best detection
    first); ``ious [M]`` their mask IoUs; ``missed``: objects no detection took; ``false_positives``:
    detections that took no object (ascending).
    """

    pairs: np.ndarray
    ious: np.ndarray
    missed: np.ndarray
    false_positives: np.ndarray


def mask_iou(masks_a: np.ndarray, masks_b: np.ndarray) -> np.ndarray:
    """IoU of every pair of binary masks: ``[A, H, W]`` x ``[B, H, W]`` -> ``[A, B]`` (0 where both are empty)."""
    pixels = int(np.prod(masks_a.shape[1:]))
    a = masks_a.reshape(len(masks_a), pixels).astype(np.float64)  # [A, HW]
    b = masks_b.reshape(len(masks_b), pixels).astype(np.float64)  # [B, HW]
    intersection = a @ b.T  # [A, B]
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def match_masks(object_masks, object_labels, masks, labels, scores, iou_threshold: float = 0.5) -> MaskMatches:
    """Match detections to objects on one image by mask IoU, as COCO does for one threshold.

    Detections are taken best score first; each takes the free object *of its own class* it overlaps
    most, if that IoU is ``>= iou_threshold``, and is a false positive otherwise. The IoUs are one
    matrix product; the pass is a loop over detections because each match takes an object away.
    """
    matches = greedy_match(mask_iou(np.asarray(object_masks), np.asarray(masks)), object_labels, labels, scores,
                           iou_threshold)  # IoUs [G, D]
    return MaskMatches(matches.pairs, matches.ious, matches.missed, matches.false_positives)


@dataclass
class ImageResult:
    """One variant on one image: its kept detections, their matches, and the counts the caption gives."""

    variant: str
    instances: Instances
    matches: MaskMatches
    objects: int

    @property
    def detections(self) -> int:
        return len(self.instances)

    @property
    def matched(self) -> int:
        return len(self.matches.pairs)

    @property
    def mean_iou(self) -> float | None:
        """Mean mask IoU of the matched pairs (``None`` without a match)."""
        return float(self.matches.ious.mean()) if len(self.matches.ious) else None

    def matched_at(self, threshold: float) -> int:
        """How many matches have a mask IoU ``>= threshold`` (0.75: what AP75 asks)."""
        return int((self.matches.ious >= threshold).sum())

    def summary(self) -> str:
        iou = "–" if self.mean_iou is None else f"{self.mean_iou:.3f}"
        false = len(self.matches.false_positives)
        return (f"{_label(self.variant)}: {_count(self.detections, 'detection')}, {self.matched} of "
                f"{_count(self.objects, 'object')} matched (mean mask IoU {iou}, {self.matched_at(0.75)} at "
                f"IoU ≥ 0.75), {_count(false, 'false positive')}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def compare_image(detections: dict, variant: str, target: dict, image_id: int, score_threshold: float = 0.5,
                  iou_threshold: float = 0.5, baseline: str = BASELINE) -> tuple[ImageResult, ImageResult]:
    """The baseline's and ``variant``'s detections on one image, matched to its ground truth ``target``
    (``masks [G, H, W]``, ``labels [G]``; Shapes labels are the COCO category ids)."""
    for name in (baseline, variant):
        if name not in detections:
            raise ValueError(f"variant {name!r} has no detections; there are {sorted(detections)}")
    object_masks = np.asarray(target["masks"]).astype(bool)  # [G, H, W]
    object_labels = np.asarray(target["labels"])
    size = object_masks.shape[1:]
    results = []
    for name in (baseline, variant):
        instances = instances_from_results(detections[name], image_id, size, score_threshold)
        matches = match_masks(object_masks, object_labels, instances.masks, instances.labels, instances.scores,
                              iou_threshold)
        results.append(ImageResult(name, instances, matches, len(object_labels)))
    return results[0], results[1]


@dataclass
class AblationView(View):
    """The explorer's view, with the numbers behind it."""

    image_id: int = 0
    baseline: ImageResult | None = None
    variant: ImageResult | None = None


def _draw_outlines(ax, masks) -> None:
    """Each mask's outline ``[N, H, W]``, thin and white, through the pixel centres (as ``show_image`` places them)."""
    masks = np.asarray(masks).astype(np.float32)
    if len(masks) == 0:
        return
    height, width = masks.shape[1:]
    xs, ys = np.arange(width) + 0.5, np.arange(height) + 0.5
    for mask in masks:
        ax.contour(xs, ys, mask, levels=[0.5], colors="white", linewidths=0.9)


def _draw_result(ax, image, result: ImageResult, class_names, palette, object_masks):
    show_image(ax, image)
    instances, matches = result.instances, result.matches
    colours = [tuple(palette[label % len(palette)]) for label in instances.labels]
    draw_masks(ax, instances.masks, colors=colours)
    good = matches.pairs[:, 1]
    draw_boxes(ax, instances.boxes[good], instances.labels[good], instances.scores[good], class_names,
               colors=[colours[d] for d in good])
    bad = matches.false_positives
    draw_boxes(ax, instances.boxes[bad], instances.labels[bad], instances.scores[bad], class_names,
               style="dotted", colors="tab:red")
    _draw_outlines(ax, object_masks)  # the ground truth, to judge the masks' fit
    iou = "–" if result.mean_iou is None else f"{result.mean_iou:.2f}"
    ax.set_title(f"{_label(result.variant)}\n{result.matched}/{result.objects} matched, mask IoU {iou}, "
                 f"{len(bad)} false", fontsize=9)


def ablation_view(detections: dict, dataset, variant: str, image_id: int, score_threshold: float = 0.5,
                  baseline: str = BASELINE, class_names=None, draw: bool = True) -> AblationView:
    """Ground truth, the baseline's and ``variant``'s detections on ``dataset[image_id]`` (an empty
    figure if not ``draw``), and a caption with the counts and matches of both. The detections' panels
    outline the true masks in white; solid boxes are matched, dotted red ones false positives."""
    image, target = dataset[image_id]
    base, other = compare_image(detections, variant, target, image_id, score_threshold, baseline=baseline)
    caption = (f"image {image_id} ({base.objects} objects), detections scoring ≥ {score_threshold:.2f}, "
               f"matched by mask IoU ≥ 0.5 — {base.summary()}; {other.summary()}")
    figure = Figure(figsize=(10, 3.9), layout="constrained")
    if draw:
        class_names = class_names or getattr(dataset, "class_names", None)
        palette = class_colors(max(len(class_names or ()), 4))
        truth_ax, base_ax, other_ax = figure.subplots(1, 3)
        show_image(truth_ax, image)
        labels = np.asarray(target["labels"])
        colours = [tuple(palette[label % len(palette)]) for label in labels]
        draw_masks(truth_ax, target["masks"], colors=colours)
        draw_boxes(truth_ax, target["boxes"], labels, class_names=class_names, colors=colours)
        truth_ax.set_title(f"ground truth, image {image_id}\n{len(labels)} objects", fontsize=9)
        _draw_result(base_ax, image, base, class_names, palette, target["masks"])
        _draw_result(other_ax, image, other, class_names, palette, target["masks"])
    return AblationView(figure, caption, image_id, base, other)


def ablation_explorer(detections: dict, dataset, baseline: str = BASELINE, num_images: int | None = None,
                      class_names=None, draw: bool = True) -> Explorer:
    """A variant menu (every variant but the baseline), an image slider over the images the
    detections cover, and a score threshold."""
    variants = [name for name in detections if name != baseline]
    if baseline not in detections or not variants:
        raise ValueError(f"detections need the baseline {baseline!r} and at least one other variant; "
                         f"got {sorted(detections)}")
    if num_images is None:
        image_ids = [r["image_id"] for results in detections.values() for r in results]
        num_images = max(image_ids) + 1 if image_ids else 1
    controls = {
        "variant": widgets.Dropdown(options=[(_label(v), v) for v in variants], value=variants[0],
                                    description="variant"),
        "image_id": widgets.IntSlider(value=0, min=0, max=num_images - 1, continuous_update=False,
                                      description="held-out image"),
        "score_threshold": widgets.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, continuous_update=False,
                                               description="min score"),
    }
    return Explorer(controls, lambda **values: ablation_view(detections, dataset, baseline=baseline,
                                                             class_names=class_names, draw=draw, **values), draw=draw)


# Watching a training run --------------------------------------------------------------------------------


@dataclass
class TrainingMonitor:
    """An ``evaluate_fn`` for ``fit`` that also records the losses of every training step.

    ``attach(model)`` registers a forward hook: each forward pass in training mode (one per step)
    appends its five losses to ``losses`` (name -> list of floats; ``steps`` counts them from
    ``start_step + 1``). Passed to ``fit(..., evaluate_fn=monitor)``, ``monitor(model, dataset)``
    scores the validation set with ``evaluate(model, dataset) -> metrics`` (default: COCO evaluation
    of the whole set), appends ``(step, metrics)`` to ``validations`` and calls
    ``on_validation(monitor)``. It runs inside ``torch.random.fork_rng``: evaluation draws from
    torch's global generator (a DataLoader seeds itself from it), which the model's samplers use
    in training, so without it every validation would change the rest of the run.
    """

    evaluate: Callable | None = None
    on_validation: Callable | None = None
    start_step: int = 0
    losses: dict = field(default_factory=dict)
    validations: list = field(default_factory=list)
    _handle: object = None

    @property
    def steps(self) -> np.ndarray:
        """The step of every recorded loss: ``[T]``, 1-based as ``fit`` counts them."""
        count = len(next(iter(self.losses.values()))) if self.losses else 0
        return np.arange(self.start_step + 1, self.start_step + 1 + count)

    def attach(self, model: torch.nn.Module) -> "TrainingMonitor":
        self.detach()
        self._handle = model.register_forward_hook(self._record)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _record(self, module, inputs, output) -> None:
        if module.training and isinstance(output, dict):
            for name, value in output.items():
                self.losses.setdefault(name, []).append(float(value.detach()))

    def __call__(self, model, dataset) -> dict:
        with torch.random.fork_rng(devices=[]):
            if self.evaluate is None:
                from ..coco_eval import coco_evaluate

                metrics = coco_evaluate(model, dataset, progress=False)[0]
            else:
                metrics = self.evaluate(model, dataset)
        self.validations.append((int(self.steps[-1]) if len(self.steps) else self.start_step, metrics))
        if self.on_validation is not None:
            self.on_validation(self)
        return metrics


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """The running mean over the last ``window`` values (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    starts = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (sums[1:] - sums[starts]) / (np.arange(1, len(values) + 1) - starts)


def draw_training_progress(monitor: TrainingMonitor, total_steps: int | None = None, window: int = 20,
                           title: str = "") -> Figure:
    """Left: the total and the five losses per step (faint), with a running mean over ``window``
    steps, log scale. Right: validation box and mask AP, AP50 and AP75 at each validation."""
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    loss_ax, ap_ax = figure.subplots(1, 2)
    steps = monitor.steps
    if len(steps):
        total = np.sum([np.asarray(v) for v in monitor.losses.values()], axis=0)
        for k, (name, values) in enumerate([("total", total), *monitor.losses.items()]):
            colour = "black" if name == "total" else f"C{k - 1}"
            values = np.asarray(values)
            loss_ax.plot(steps, values, color=colour, alpha=0.15, linewidth=0.8)
            loss_ax.plot(steps, _smooth(values, window), color=colour, linewidth=2 if name == "total" else 1.3,
                         label=name.removeprefix("loss_"))
        loss_ax.set_yscale("log")
        loss_ax.legend(fontsize=8, ncols=2, loc="upper right")
    loss_ax.set(xlabel="step", ylabel="loss (log scale)", title=f"losses, running mean of {window} steps")
    if total_steps:
        loss_ax.set_xlim(0, total_steps)
        ap_ax.set_xlim(0, total_steps)
    for kind, style in (("segm", "-"), ("bbox", "--")):
        for k, metric in enumerate(METRICS):
            points = [(step, m[kind][metric]) for step, m in monitor.validations if m[kind][metric] is not None]
            if points:
                xs, ys = zip(*points)
                ap_ax.plot(xs, ys, style, marker="o", color=f"C{k}", label=f"{'mask' if kind == 'segm' else 'box'} {metric}")
    ap_ax.set(xlabel="step", ylabel="AP", ylim=(0, 1), title="validation AP")
    ap_ax.grid(alpha=0.3)
    if monitor.validations:
        ap_ax.legend(fontsize=8, ncols=2, loc="lower right")
    loss_ax.grid(alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure
