"""Watching a training run: the losses of every step and the validation AP, drawn as they come.

``fit`` calls ``evaluate_fn(model, dataset)`` at every validation. ``TrainingMonitor`` is such a
function: it scores the validation set (without touching the random state that training draws
from, so the run stays the one ``maskrcnn-edu train`` makes), and, with a forward hook on the
model, records the five losses of every training step; after each validation it calls back, e.g.
to redraw ``draw_training_progress`` in a notebook (chapter 10).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from matplotlib.figure import Figure

from ..evaluation.coco import coco_evaluate
from .training import smooth

__all__ = ["TrainingMonitor", "draw_training_progress"]

METRICS = ("AP", "AP50", "AP75")  # the validation numbers drawn, for masks and for boxes


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
                metrics = coco_evaluate(model, dataset, progress=False)[0]
            else:
                metrics = self.evaluate(model, dataset)
        self.validations.append((int(self.steps[-1]) if len(self.steps) else self.start_step, metrics))
        if self.on_validation is not None:
            self.on_validation(self)
        return metrics


def _draw_losses(ax, monitor: TrainingMonitor, weight: float) -> None:
    """The total and each loss per step (faint) and smoothed (``explorers.training.smooth``), log scale."""
    steps = monitor.steps
    if len(steps):
        total = np.sum([np.asarray(v) for v in monitor.losses.values()], axis=0)  # [T]
        for k, (name, values) in enumerate([("total", total), *monitor.losses.items()]):
            colour = "black" if name == "total" else f"C{k - 1}"
            ax.plot(steps, values, color=colour, alpha=0.15, linewidth=0.8)
            ax.plot(steps, smooth(values, weight), color=colour, linewidth=2 if name == "total" else 1.3,
                    label=name.removeprefix("loss_"))
        ax.set_yscale("log")
        ax.legend(fontsize=8, ncols=2, loc="upper right")
    ax.set(xlabel="step", ylabel="loss (log scale)", title=f"losses, smoothed (weight {weight:g})")
    ax.grid(alpha=0.3)


def _draw_validation_ap(ax, monitor: TrainingMonitor) -> None:
    """Mask (solid) and box (dashed) AP, AP50 and AP75 at each validation; undefined ones left out."""
    for kind, style in (("segm", "-"), ("bbox", "--")):
        for k, metric in enumerate(METRICS):
            points = [(step, m[kind][metric]) for step, m in monitor.validations
                      if m[kind][metric] is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, marker="o", color=f"C{k}",
                        label=f"{'mask' if kind == 'segm' else 'box'} {metric}")
    ax.set(xlabel="step", ylabel="AP", ylim=(0, 1), title="validation AP")
    ax.grid(alpha=0.3)
    if monitor.validations:
        ax.legend(fontsize=8, ncols=2, loc="lower right")


def draw_training_progress(monitor: TrainingMonitor, total_steps: int | None = None, weight: float = 0.9,
                           title: str = "") -> Figure:
    """Left: the total and the five losses per step (faint), smoothed with TensorBoard's moving
    average of ``weight`` (``explorers.training.smooth``: 0.9 remembers about the last 20 steps),
    log scale. Right: validation box and mask AP, AP50 and AP75 at each validation."""
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    loss_ax, ap_ax = figure.subplots(1, 2)
    _draw_losses(loss_ax, monitor, weight)
    _draw_validation_ap(ap_ax, monitor)
    if total_steps:
        loss_ax.set_xlim(0, total_steps)
        ap_ax.set_xlim(0, total_steps)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure
