"""Chapter 04's explorer: follow one detection from its proposal to its pasted mask.

For detection ``d`` of image ``i`` the trace of the model holds the whole story, and
``trace.lineage(d, i)`` (a ``DetectionLineage``) follows it back:

* the **proposal** (RoI) the box head classified, ``lineage.proposal``, and the **FPN level** its
  size picked, ``lineage.roi_level``;
* the **refined box**: that RoI moved by the deltas of the detection's class (``lineage.refined``,
  the detection's box), and the IoU between the two;
* the mask head's **28 x 28 logits** for the detection's class, read at the refined box (at
  inference the mask head sees the detection's box, so its level can differ from the proposal's);
* the mask **pasted** into the image (``masks.paste_masks``).

``detection_path`` adds to the lineage what the explorer shows, ``draw_detection_path`` draws it,
``heads_view`` is the explorer's view function and ``heads_explorer`` the widget (an image slider
and a detection slider).

``activations_explorer`` shows the backbone's activation grids (``visualize.draw_activations``) of
a few traced pictures: a picture menu, C2-C5 or P2-P6, and how many channels per level
(view function ``activations_view``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ..boxes import box_iou
from ..masks import paste_masks
from ..model import DetectionLineage
from ..roi_heads import FIRST_LEVEL, LAST_LEVEL
from ..roi_ops import fpn_level
from ..visualize import (class_name, draw_activations, draw_box, draw_feature_map, roi_align_box, show_image,
                         to_numpy, zoom_view)
from .shell import COLUMN_WIDTH_PX, DPI, Explorer, View

__all__ = ["DetectionPath", "HeadsView", "detection_path", "draw_detection_path", "heads_view",
           "heads_explorer", "activations_view", "activations_explorer"]

MASK_THRESHOLD = 0.5  # a pasted mask's pixel belongs to the object where its probability is above this


@dataclass(frozen=True)
class DetectionPath:
    """One detection, stage by stage: its ``lineage`` (``Trace.lineage``: label, score, RoI,
    ``proposal [4]``, the box head's level ``roi_level`` (2 = P2 ... 5 = P5), ``refined [4]`` (the
    detection's box), class scores, ``mask_logits [M, M]`` of its own class, back to its anchor)
    and what the explorer adds. Boxes ``(x0, y0, x1, y1)`` in the resized image's pixels.

    ``image_index`` names the image in the caption; ``num_detections``: how many it has.
    ``mask_level``: the level the mask head read the refined box from. ``iou``: IoU(proposal,
    refined). ``pasted [h, w]``: the mask's probabilities pasted into the image. ``feature [H_l,
    W_l]``: the box head's level's FPN map averaged over channels (for drawing);
    ``box_roi_size``: the side of the grid RoIAlign cut for the box head.
    """

    lineage: DetectionLineage
    image_index: int
    num_detections: int
    class_name: str
    mask_level: int
    iou: float
    pasted: Tensor
    feature: Tensor
    box_roi_size: int = 7

    @property
    def stride(self) -> int:
        """Pixels per feature cell of the box head's level: ``2 ** lineage.roi_level``."""
        return 2**self.lineage.roi_level

    @property
    def mask_pixels(self) -> int:
        """Pixels of the pasted mask above ``MASK_THRESHOLD``."""
        return int((self.pasted > MASK_THRESHOLD).sum())


def detection_path(trace, detection: int, image: int = 0, class_names: Sequence[str] | None = None,
                   canonical_size: float = 224.0, aligned: bool = False) -> DetectionPath:
    """Detection ``detection`` of image ``image`` of an inference ``trace`` (``model.trace(images)``):
    its ``trace.lineage`` and what the explorer draws besides.

    ``canonical_size`` and ``aligned``: the model's ``config.roi_canonical_size`` (by which the
    refined box's mask level is chosen) and ``config.aligned`` (how the mask is pasted).

    Raises ``ValueError`` (from ``Trace.lineage``) for a training trace or an index out of range.
    """
    lineage = trace.lineage(detection, image)
    refined = lineage.refined
    probabilities = lineage.mask[None, None]  # [1, 1, M, M]
    pasted = paste_masks(probabilities, refined[None], trace.batch.image_sizes[image], aligned=aligned)[0, 0]
    return DetectionPath(
        lineage=lineage,
        image_index=image,
        num_detections=len(trace.heads.detections[image]["boxes"]),
        class_name=class_name(lineage.label, class_names),
        mask_level=int(fpn_level(refined[None], FIRST_LEVEL, LAST_LEVEL, canonical_size)[0]),
        iou=float(box_iou(lineage.proposal[None], refined[None])[0, 0]),
        pasted=pasted,  # [h, w]
        feature=trace.features[lineage.roi_level - FIRST_LEVEL][image].mean(dim=0),  # [H_l, W_l]
        box_roi_size=int(trace.heads.box_features_shape[-1]),
    )


def _refinement_panel(ax: Axes, path: DetectionPath, image: Tensor) -> None:
    """The proposal (dashed) and the refined box, zoomed onto both."""
    proposal, refined = path.lineage.proposal, path.lineage.refined
    show_image(ax, image)
    draw_box(ax, to_numpy(proposal), color="tab:orange", linestyle="--", label="proposal")
    draw_box(ax, to_numpy(refined), color="tab:cyan", label=f"refined ({path.class_name})")
    zoom_view(ax, torch.stack([proposal, refined]), fraction=0.25)  # a few pixels of refinement must show
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8, ncol=1, frameon=False)
    ax.set_title(f"proposal -> refined box (zoomed)\nIoU {path.iou:.2f}", fontsize=10)


def _level_panel(ax: Axes, path: DetectionPath, aligned: bool) -> None:
    """The box head's FPN level, and the proposal where RoIAlign reads it, split into its bins."""
    draw_feature_map(ax, path.feature, cmap="viridis", grid=False)
    on_map = roi_align_box(to_numpy(path.lineage.proposal).tolist(), 1 / path.stride, aligned=aligned)
    bins = path.box_roi_size
    draw_box(ax, on_map, bins=(bins, bins), color="tab:orange", linewidth=1.5)
    ax.set_title(f"P{path.lineage.roi_level} (stride {path.stride}), channel mean\n"
                 f"the box head's {bins} x {bins} bins", fontsize=10)


def _logits_panel(ax: Axes, path: DetectionPath) -> None:
    """The mask head's logits for the detection's class, diverging around 0, with the 0 contour."""
    logits = to_numpy(path.lineage.mask_logits)
    limit = float(np.abs(logits).max()) or 1.0
    shown = ax.imshow(logits, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.contour(logits, levels=[0.0], colors="black", linewidths=1.0)
    ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="logit")
    side = logits.shape[-1]
    ax.set_title(f"{side} x {side} logits, class {path.class_name}\n(black: logit 0, p = 0.5)", fontsize=10)
    ax.set_xlabel("x (mask cells)")
    ax.set_ylabel("y (mask cells)")


def _pasted_panel(ax: Axes, path: DetectionPath, image: Tensor) -> None:
    """The pasted probabilities as opacity over the image, the threshold's contour and the box."""
    show_image(ax, image)
    pasted = to_numpy(path.pasted)
    overlay = np.zeros((*pasted.shape, 4))
    overlay[..., :3] = (0.0, 0.9, 1.0)
    overlay[..., 3] = 0.6 * pasted  # the probability as opacity
    ax.imshow(overlay, extent=(0, pasted.shape[1], pasted.shape[0], 0))
    ax.contour(np.arange(pasted.shape[1]) + 0.5, np.arange(pasted.shape[0]) + 0.5, pasted,
               levels=[MASK_THRESHOLD], colors="white", linewidths=1.0)
    draw_box(ax, to_numpy(path.lineage.refined), color="tab:cyan", linewidth=1.0)
    ax.set_title(f"pasted: {path.mask_pixels} px above {MASK_THRESHOLD}", fontsize=10)


def draw_detection_path(path: DetectionPath, image: Tensor, aligned: bool = False) -> Figure:
    """Four panels: proposal -> refined box; the level's map; the 28 x 28 logits; the pasted mask.

    ``aligned``: the model's RoIAlign setting, for drawing the proposal where RoIAlign reads it.
    """
    figure = Figure(figsize=(11.6, 3.5), layout="constrained")
    ax_boxes, ax_level, ax_logits, ax_pasted = figure.subplots(1, 4)
    _refinement_panel(ax_boxes, path, image)
    _level_panel(ax_level, path, aligned)
    _logits_panel(ax_logits, path)
    _pasted_panel(ax_pasted, path, image)
    return figure


def _caption(path: DetectionPath) -> str:
    lineage = path.lineage
    width, height = (float(v) for v in (lineage.proposal[2:] - lineage.proposal[:2]))
    return (
        f"Image {path.image_index}, detection {lineage.detection} of {path.num_detections}: "
        f"{path.class_name}, score {lineage.score:.3f}. Its proposal (RoI {lineage.roi}, "
        f"{width:.0f} x {height:.0f} px) was read from P{lineage.roi_level}; the {path.class_name} "
        f"refinement moved it to a box with IoU {path.iou:.2f}; the mask head read that box from "
        f"P{path.mask_level}."
    )


@dataclass
class HeadsView(View):
    """A ``View`` that also holds the ``DetectionPath`` it shows (None for an image without detections)."""

    path: DetectionPath | None = None


def heads_view(trace, detection: int = 0, image_index: int = 0, class_names: Sequence[str] | None = None,
               draw: bool = True, aligned: bool = False, canonical_size: float = 224.0) -> HeadsView:
    """The explorer's view: detection ``detection`` of a one-image inference ``trace``.

    ``image_index`` only names the image in the caption. The caption gives the class, score, both
    levels and the IoU between proposal and refined box. ``draw=False`` skips the figure.
    """
    if len(trace.heads.detections[0]["boxes"]) == 0:
        figure = None
        if draw:
            figure = Figure(figsize=(3.5, 3.5), layout="constrained")
            show_image(figure.subplots(), trace.image(0))
        return HeadsView(figure, f"Image {image_index}: no detections.")
    path = detection_path(trace, detection, 0, class_names, canonical_size, aligned)
    path = dataclasses.replace(path, image_index=image_index)
    figure = draw_detection_path(path, trace.image(0), aligned) if draw else None
    return HeadsView(figure, _caption(path), path)


def heads_explorer(model, images: Sequence[Tensor], draw: bool = True) -> Explorer:
    """An image slider and a detection slider over ``images`` (each ``[3, H, W]`` in 0..1).

    Each image is traced once, when first shown. The detection slider's range follows the chosen
    image's number of detections.
    """
    if len(images) == 0:
        raise ValueError("images must hold at least one image")
    class_names = getattr(model.config, "class_names", None)
    traces: dict[int, object] = {}

    def trace_of(index: int):
        if index not in traces:
            traces[index] = model.trace(images[index])
        return traces[index]

    def last_detection(index: int) -> int:
        return max(len(trace_of(index).heads.detections[0]["boxes"]) - 1, 0)

    image_slider = widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image")
    detection_slider = widgets.IntSlider(value=0, min=0, max=last_detection(0), description="detection")

    # Registered before the Explorer's own observers, so the range is right before the view runs
    # (lowering max below the value moves the value down too).
    def follow_image(change) -> None:
        detection_slider.max = last_detection(change["new"])

    image_slider.observe(follow_image, names="value")

    def view(image: int, detection: int) -> HeadsView:
        return heads_view(trace_of(image), detection, image, class_names, draw=draw,
                          aligned=model.config.aligned, canonical_size=model.config.roi_canonical_size)

    return Explorer({"image": image_slider, "detection": detection_slider}, view, draw=draw)


# Activations ---------------------------------------------------------------------------------------

ACTIVATION_MAPS = {"C": "ResNet body, C2-C5", "P": "FPN, P2-P6"}
PANEL_INCHES = 1.9  # the side of one channel's panel: at the explorers' 80 dpi, about 150 pixels


def activations_view(traces: dict, picture: str, maps: str = "C", channels: int = 4,
                     draw: bool = True) -> View:
    """``draw_activations`` of ``traces[picture]`` (a name -> trace dict), ``maps`` "C" or "P", the
    ``channels`` channels with the highest mean activation per level, sized so that a panel stays
    about ``PANEL_INCHES`` wide (narrower where that would pass the notebook column)."""
    if picture not in traces:
        raise ValueError(f"picture must be one of {sorted(traces)}, got {picture!r}")
    if maps not in ACTIVATION_MAPS:
        raise ValueError(f'maps must be "C" or "P", got {maps!r}')
    trace = traces[picture]
    levels = trace.stages if maps == "C" else trace.features
    size = tuple(trace.batch.image_sizes[0])
    caption = (f"{picture} ({size[0]} x {size[1]} px): {ACTIVATION_MAPS[maps]}, the {channels} channels of "
               f"highest mean activation per level, each panel on its own colour scale.")
    figure = None
    if draw:
        figure = draw_activations(trace, maps, channels=channels)
        panel = min(PANEL_INCHES, (COLUMN_WIDTH_PX / DPI - 0.6) / channels)  # never wider than the column
        figure.set_size_inches(panel * channels + 0.6, (panel + 0.45) * len(levels) + 0.5)
    return View(figure, caption)


def activations_explorer(traces: dict, picture: str | None = None, maps: str = "C", channels: int = 4,
                         draw: bool = True) -> Explorer:
    """A picture menu (the names of ``traces``, name -> trace), a C / P switch (the ResNet body's
    stages or the FPN's levels) and a slider for the channels shown per level (1 to 8)."""
    if not traces:
        raise ValueError("traces must hold at least one traced picture")
    names = list(traces)
    controls = {
        "picture": widgets.Dropdown(options=names, value=picture or names[0], description="picture"),
        "maps": widgets.ToggleButtons(options=[("C2-C5 (ResNet)", "C"), ("P2-P6 (FPN)", "P")], value=maps,
                                      description="maps"),
        "channels": widgets.IntSlider(value=channels, min=1, max=8, continuous_update=False,
                                      description="channels per level"),
    }

    def view(picture: str, maps: str, channels: int) -> View:
        return activations_view(traces, picture, maps, channels, draw=draw)

    return Explorer(controls, view, draw=draw)
