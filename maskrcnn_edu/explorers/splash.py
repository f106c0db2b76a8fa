"""Chapter 09's colour splash explorer: a score slider and a list of detections to drop choose which
detected instances keep their colour; the rest of the photograph is grey
(``visualize.colour_splash``, the Keras Mask R-CNN's balloon demo)."""
from __future__ import annotations

from dataclasses import dataclass, field

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..visualize import show_image
from ..visualize.splash import colour_splash
from .shell import Explorer, View

__all__ = ["SplashView", "splash_keep", "splash_view", "splash_explorer"]


@dataclass
class SplashView(View):
    """The explorer's view, with the splash image and the indices of the detections kept in colour."""

    splash: Tensor | None = None
    kept: list = field(default_factory=list)


def splash_keep(scores: Tensor, min_score: float, dropped=()) -> Tensor:
    """Which detections keep their colour: ``scores [D]`` -> bool ``[D]``, those scoring at least
    ``min_score`` and not among the indices ``dropped``."""
    keep = scores >= min_score  # [D]
    keep[list(dropped)] = False
    return keep


def _outline(ax, masks: Tensor, keep: Tensor, shown: Tensor) -> None:
    """Each shown detection's mask outlined (kept: solid yellow; dropped: dashed white) and numbered."""
    height, width = masks.shape[-2:]
    xs, ys = np.arange(width) + 0.5, np.arange(height) + 0.5  # pixel centres
    for k in torch.nonzero(shown).flatten().tolist():
        colour, style = ("yellow", "solid") if keep[k] else ("white", "dashed")
        ax.contour(xs, ys, masks[k].float().numpy(), levels=[0.5], colors=[colour], linestyles=style,
                   linewidths=1.2)
        rows, columns = torch.nonzero(masks[k], as_tuple=True)
        if len(rows):
            ax.text(columns.float().mean() + 0.5, rows.float().mean() + 0.5, str(k), color=colour,
                    fontsize=9, ha="center", va="center", fontweight="bold")


def splash_view(image: Tensor, detections: dict, min_score: float = 0.5, dropped=(),
                mask_threshold: float = 0.5, draw: bool = True) -> SplashView:
    """The photograph with the detections scoring ``>= min_score`` outlined and numbered, beside its
    colour splash. ``image [3, H, W]`` in 0..1; ``detections``: the model's dict for it (``scores [D]``,
    ``masks [D, 1, H, W]`` probabilities, cut at ``mask_threshold``); ``dropped``: indices that go grey."""
    masks = detections["masks"][:, 0] > mask_threshold  # [D, H, W]
    scores = detections["scores"]  # [D]
    keep = splash_keep(scores, min_score, dropped)  # [D]
    splash = colour_splash(image, masks, keep)  # [3, H, W]
    shown = scores >= min_score
    kept = torch.nonzero(keep).flatten().tolist()
    caption = (f"{len(kept)} of the {int(shown.sum())} detections scoring >= {min_score:.2f} keep their "
               "colour"
               + (f" (dropped: {', '.join(str(k) for k in sorted(dropped))})" if dropped else "")
               + f"; {100 * (1 - masks[keep].any(dim=0).float().mean().item()):.0f}% of the pixels are grey.")
    figure = Figure(figsize=(11.0, 4.6), layout="constrained")
    if draw:
        left, right = figure.subplots(1, 2)
        show_image(left, image, title="detections (yellow: in colour; dashed white: dropped)")
        _outline(left, masks, keep, shown)
        show_image(right, splash, title="colour splash")
    return SplashView(figure, caption, splash, kept)


def splash_explorer(image: Tensor, detections: dict, draw: bool = True) -> Explorer:
    """A ``min score`` slider and a ``drop`` list of the detections (hold Ctrl or Shift to pick several)."""
    options = [(f"{k}: score {score:.2f}", k) for k, score in enumerate(detections["scores"].tolist())]
    controls = {
        "min_score": widgets.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, continuous_update=False,
                                         description="min score"),
        "dropped": widgets.SelectMultiple(options=options, value=(), rows=6, description="drop"),
    }
    return Explorer(controls, lambda **values: splash_view(image, detections, draw=draw, **values), draw=draw)
