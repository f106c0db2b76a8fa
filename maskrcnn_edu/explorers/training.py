"""Chapters 06 and 07's explorers: a sample through the training augmentation (06), a run's loss curves (07).

**Augmentation.** The reader picks a transform (one part of ``train_transforms()``, or all of it)
and a seed; the view draws the sample before and after, masks and boxes included, and says what
changed: how many objects are left, how their total mask area and the image's mean brightness
moved, and whether every box is still the tight box of its mask. ``augment`` runs the transform
under its own seed inside ``torch.random.fork_rng``, so browsing seeds never disturbs the global
generator that training draws from.

**Loss curves.** ``read_scalars`` reads the scalars ``fit`` logged to TensorBoard from the event
files; the reader picks a loss and a smoothing weight (TensorBoard's own debiased moving average,
``smooth``), and the caption gives the first, last, smoothed and smallest values.

The views are plain functions of the controls' values (``augmentation_view``, ``loss_curve_view``);
``augmentation_explorer`` and ``loss_curve_explorer`` wrap them in ``Explorer``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, FuncFormatter, NullFormatter
from torch import Tensor

from ..data import tight_boxes, train_transforms
from ..visualize import class_colors, draw_boxes, draw_masks, show_image
from .shell import Explorer, View

__all__ = [
    "AUGMENTATIONS", "augmentation", "augment", "AugmentationResult", "augmentation_result", "draw_sample",
    "draw_augmentation_grid", "AugmentationView", "augmentation_view", "augmentation_explorer",
    "read_scalars", "smooth", "draw_loss_curves", "LossCurveView", "loss_curve_view", "loss_curve_explorer",
]

_NO_COLOUR = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)

# The parts of ``train_transforms()`` one at a time (the others switched off), and all of it.
AUGMENTATIONS = {
    "train_transforms()": {},
    "horizontal flip (p = 0.5)": dict(scale_range=(1.0, 1.0), **_NO_COLOUR),
    "scale jitter (0.75..1.25)": dict(flip_prob=0.0, **_NO_COLOUR),
    "colour jitter": dict(flip_prob=0.0, scale_range=(1.0, 1.0)),
}


def augmentation(name: str):
    """The ``DetectionTransform`` called ``name`` in ``AUGMENTATIONS``."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augmentation name must be one of {list(AUGMENTATIONS)}, got {name!r}")
    return train_transforms(**AUGMENTATIONS[name])


def augment(image: Tensor, target: dict, name: str, seed: int) -> tuple[Tensor, dict]:
    """``image [3, H, W]`` and its target through the augmentation ``name``, drawn with ``seed``.

    v2 transforms draw from torch's global generator; it is seeded here inside ``fork_rng`` and
    restored afterwards, so the same ``(name, seed)`` always gives the same sample, and the caller's
    random state is untouched.
    """
    transform = augmentation(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image, target)


@dataclass
class AugmentationResult:
    """A sample before and after one augmentation, and the numbers the caption reports."""

    name: str
    seed: int
    image: Tensor  # [3, H, W] the original
    target: dict
    augmented_image: Tensor  # [3, H, W]
    augmented_target: dict
    objects_before: int
    objects_after: int
    area_before: int  # pixels covered by the masks, summed over objects
    area_after: int
    brightness_before: float  # mean pixel value, 0..1
    brightness_after: float
    centre_x_before: float  # mean x of the box centres, in pixels (a flip mirrors it about W / 2)
    centre_x_after: float
    boxes_are_tight: bool  # every augmented box is the tight box of its augmented mask


def _mean_centre_x(boxes: Tensor) -> float:
    return float((boxes[:, 0] + boxes[:, 2]).mean() / 2) if len(boxes) else float("nan")


def augmentation_result(image: Tensor, target: dict, name: str, seed: int) -> AugmentationResult:
    """Augment the sample with ``(name, seed)`` and measure what changed."""
    new_image, new_target = augment(image, target, name, seed)
    boxes, masks = new_target["boxes"], new_target["masks"]
    tight = bool(torch.equal(boxes.float(), tight_boxes(masks))) if len(masks) else len(boxes) == 0
    return AugmentationResult(
        name, seed, image, target, new_image, new_target,
        objects_before=len(target["labels"]), objects_after=len(new_target["labels"]),
        area_before=int(target["masks"].sum()), area_after=int(masks.sum()),
        brightness_before=float(image.mean()), brightness_after=float(new_image.mean()),
        centre_x_before=_mean_centre_x(target["boxes"]), centre_x_after=_mean_centre_x(boxes),
        boxes_are_tight=tight,
    )


def draw_sample(ax, image: Tensor, target: dict, class_names=None, title: str | None = None):
    """The image with its masks tinted and its boxes drawn, both in the colour of their class."""
    labels = target["labels"]
    palette = class_colors(max(len(class_names or ()), int(labels.max()) + 1 if len(labels) else 1))
    colours = [tuple(palette[label]) for label in target["labels"].tolist()]
    show_image(ax, image, title=title)
    draw_masks(ax, target["masks"], colors=colours)
    draw_boxes(ax, target["boxes"], labels=target["labels"], class_names=class_names, colors=colours)
    return ax


def draw_augmentation_grid(image: Tensor, target: dict, name: str, seeds, class_names=None,
                           columns: int = 4) -> Figure:
    """The original sample, then one panel per seed of the augmentation ``name``; masks and boxes drawn."""
    seeds = list(seeds)
    rows = -(-(len(seeds) + 1) // columns)
    figure = Figure(figsize=(2.4 * columns, 2.55 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    draw_sample(axes[0], image, target, class_names, title="original")
    for ax, seed in zip(axes[1:], seeds):
        result = augmentation_result(image, target, name, seed)
        draw_sample(ax, result.augmented_image, result.augmented_target, class_names,
                    title=f"seed {seed}: {result.objects_after} objects")
    for ax in axes[len(seeds) + 1:]:
        ax.set_visible(False)
    figure.suptitle(f"{name}: one sample, {len(seeds)} draws (masks and boxes follow the image)", fontsize=11)
    return figure


def _augmentation_caption(result: AugmentationResult) -> str:
    area_ratio = result.area_after / result.area_before if result.area_before else float("nan")
    return (f"{result.name}, seed {result.seed}: {result.objects_after} of {result.objects_before} objects "
            f"kept; mask area {result.area_before} → {result.area_after} px (×{area_ratio:.2f}); "
            f"mean box centre x {result.centre_x_before:.1f} → {result.centre_x_after:.1f} px; "
            f"mean brightness {result.brightness_before:.3f} → {result.brightness_after:.3f}; "
            f"every box is the tight box of its mask: {'yes' if result.boxes_are_tight else 'NO'}")


@dataclass
class AugmentationView(View):
    """The explorer's view, with the numbers behind it (``result``) for tests and checked cells."""

    result: AugmentationResult | None = None


def augmentation_view(image: Tensor, target: dict, transform: str, seed: int, class_names=None,
                      draw: bool = True) -> AugmentationView:
    """Before and after side by side (an empty figure if not ``draw``), and the caption."""
    result = augmentation_result(image, target, transform, seed)
    figure = Figure(figsize=(8.0, 4.3), layout="constrained")
    if draw:
        before, after = figure.subplots(1, 2)
        draw_sample(before, image, target, class_names, title="original")
        draw_sample(after, result.augmented_image, result.augmented_target, class_names,
                    title=f"{transform}, seed {seed}")
    return AugmentationView(figure, _augmentation_caption(result), result)


def augmentation_explorer(image: Tensor, target: dict, class_names=None, draw: bool = True) -> Explorer:
    """A transform menu and a seed slider over one sample."""
    controls = {
        "transform": widgets.Dropdown(options=list(AUGMENTATIONS), value="train_transforms()",
                                      description="transform"),
        "seed": widgets.IntSlider(value=0, min=0, max=99, continuous_update=False, description="seed"),
    }
    def view(**values) -> AugmentationView:
        return augmentation_view(image, target, class_names=class_names, draw=draw, **values)

    return Explorer(controls, view, draw=draw)


# Loss curves ----------------------------------------------------------------------------------------


def read_scalars(log_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar in the TensorBoard event files under ``log_dir``: tag -> ``(steps [T], values [T])``.

    This is what TensorBoard's own reader (``EventAccumulator``) gives, as NumPy arrays. Only
    ``fit``'s scalars are kept (``size_guidance``: all of them, not TensorBoard's sample of 10,000).
    """
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise ValueError(f"log_dir {log_dir} is not a folder (fit writes its events to "
                         "<out_dir>/tensorboard)")
    events = EventAccumulator(str(log_dir), size_guidance={SCALARS: 0})
    events.Reload()
    curves = {}
    for tag in events.Tags()["scalars"]:
        scalars = events.Scalars(tag)
        curves[tag] = (np.array([s.step for s in scalars]), np.array([s.value for s in scalars]))
    return curves


def smooth(values, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average, debiased so it starts at the first value.

    ``smoothed[t] = m[t] / (1 - weight ** (t + 1))`` with
    ``m[t] = weight * m[t-1] + (1 - weight) * values[t]`` and ``m[-1] = 0``. ``weight = 0`` gives the
    values back; near 1, a long memory.
    """
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    values = np.asarray(values, dtype=np.float64)
    smoothed = np.empty_like(values)
    average = 0.0
    for t, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        smoothed[t] = average / (1 - weight ** (t + 1))
    return smoothed


def _loss_tags(curves: dict) -> list[str]:
    """The loss tags of a run, the total first."""
    tags = [tag for tag in curves if tag.startswith("loss/")]
    return sorted(tags, key=lambda tag: (tag != "loss/total", tags.index(tag)))


def _log_y(ax) -> None:
    """A log-scale y axis labelled in plain numbers (0.01, 0.1, 1), not powers of ten; when it spans
    less than two decades, the in-between ticks 2 and 5 (0.2, 0.5, 2, 5) are labelled too."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    low, high = ax.get_ylim()
    if high / low < 100:
        def label(value, _position):
            mantissa = round(value / 10 ** np.floor(np.log10(value)))
            return f"{value:g}" if mantissa in (2, 5) else ""

        ax.yaxis.set_minor_formatter(FuncFormatter(label))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def draw_loss_curves(curves: dict, smoothing: float = 0.0, title: str = "Losses",
                     log_scale: bool = True) -> Figure:
    """Every loss of a run (``read_scalars``'s dict) on one axis; raw values faint when smoothed."""
    figure = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = figure.subplots()
    for k, tag in enumerate(_loss_tags(curves)):
        steps, values = curves[tag]
        colour = "black" if tag == "loss/total" else f"C{k}"
        if smoothing > 0:
            ax.plot(steps, values, color=colour, alpha=0.25, linewidth=1)
        ax.plot(steps, smooth(values, smoothing), color=colour, linewidth=2 if tag == "loss/total" else 1.5,
                label=tag.removeprefix("loss/"))
    ax.set(title=title, xlabel="step", ylabel="loss" + (" (log scale)" if log_scale else ""))
    if log_scale:
        _log_y(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    return figure


@dataclass
class LossCurveView(View):
    """The explorer's view, with the curve it shows."""

    steps: np.ndarray | None = None
    values: np.ndarray | None = None
    smoothed: np.ndarray | None = None


def loss_curve_view(curves: dict, loss: str, smoothing: float, log_scale: bool = True,
                    draw: bool = True) -> LossCurveView:
    """One loss of the run, raw and smoothed, and a caption with its first, last and smallest values."""
    if loss not in curves:
        raise ValueError(f"loss must be one of the logged tags {_loss_tags(curves)}, got {loss!r}")
    steps, values = curves[loss]
    smoothed = smooth(values, smoothing)
    best = int(np.argmin(values))
    caption = (f"{loss}: {len(values)} logged steps; first {values[0]:.4f}, last {values[-1]:.4f} "
               f"(smoothed {smoothed[-1]:.4f}, {100 * smoothed[-1] / values[0]:.1f}% of the first); "
               f"smallest {values[best]:.4f} at step {int(steps[best])}")
    figure = Figure(figsize=(8.0, 3.6), layout="constrained")
    if draw:
        ax = figure.subplots()
        ax.plot(steps, values, color="tab:blue", alpha=0.3, label="logged")
        ax.plot(steps, smoothed, color="tab:blue", linewidth=2, label=f"smoothed (weight {smoothing:.2f})")
        ax.set(title=loss, xlabel="step", ylabel="loss" + (" (log scale)" if log_scale else ""))
        if log_scale:
            _log_y(ax)
        ax.grid(alpha=0.3)
        ax.legend()
    return LossCurveView(figure, caption, steps, values, smoothed)


def loss_curve_explorer(curves: dict, draw: bool = True) -> Explorer:
    """A loss menu, a smoothing slider (TensorBoard's default 0.6) and a log-scale switch."""
    controls = {
        "loss": widgets.Dropdown(options=_loss_tags(curves), description="loss"),
        "smoothing": widgets.FloatSlider(value=0.6, min=0.0, max=0.95, step=0.05, continuous_update=False,
                                         description="smoothing"),
        "log_scale": widgets.Checkbox(value=True, description="log scale"),
    }
    return Explorer(controls, lambda **values: loss_curve_view(curves, draw=draw, **values), draw=draw)
