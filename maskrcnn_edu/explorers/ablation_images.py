"""Chapter 10's explorer: one held-out image, a variant's detections beside the baseline's.

The ablation sweep (``benchmarks/ablations.py``) keeps every variant's detections on the first
held-out images (``data/ablations/detections.json``: variant -> COCO results with RLE masks).
``compare_image`` matches one image's detections of a variant and of the baseline to the ground
truth by *mask* IoU (``evaluation.match_masks``: best score first, same class, the best free
object), and ``ablation_view`` draws ground truth, baseline and variant side by side with a
caption of counts and matches; ``ablation_explorer`` wraps it in a variant menu and image and
score sliders. The table of the sweep against the paper is ``explorers.ablations``.
"""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from pycocotools import mask as mask_utils

from ..evaluation.matching import Matches, match_masks
from ..visualize import class_colors, draw_boxes, draw_masks, show_image
from .ablations import BASELINE, _label
from .shell import Explorer, View

__all__ = ["Instances", "instances_from_results", "ImageResult", "compare_image", "AblationView",
           "ablation_view", "ablation_explorer"]


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
        return Instances(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0),
                         np.zeros((0, height, width), bool))
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in kept)], dtype=np.float64)
    masks = mask_utils.decode([r["segmentation"] for r in kept]).transpose(2, 0, 1).astype(bool)  # [D, H, W]
    return Instances(boxes, np.array([r["category_id"] for r in kept], dtype=np.int64),
                     np.array([r["score"] for r in kept], dtype=np.float64), masks)


@dataclass
class ImageResult:
    """One variant on one image: its kept detections, their matches, and the counts the caption gives."""

    variant: str
    instances: Instances
    matches: Matches
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
        matches = match_masks(object_masks, object_labels, instances.masks, instances.labels,
                              instances.scores, iou_threshold)
        results.append(ImageResult(name, instances, matches, len(object_labels)))
    return results[0], results[1]


@dataclass
class AblationView(View):
    """The explorer's view, with the numbers behind it."""

    image_id: int = 0
    baseline: ImageResult | None = None
    variant: ImageResult | None = None


def _draw_outlines(ax, masks) -> None:
    """Each mask's outline ``[N, H, W]``, thin and white, through the pixel centres (where
    ``show_image`` places them)."""
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
        "score_threshold": widgets.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05,
                                               continuous_update=False, description="min score"),
    }

    def view(**values) -> AblationView:
        return ablation_view(detections, dataset, baseline=baseline, class_names=class_names, draw=draw,
                             **values)

    return Explorer(controls, view, draw=draw)
