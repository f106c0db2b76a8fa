"""Chapter 04's explorer: follow one detection from its proposal to its pasted mask.

For detection ``d`` of image ``i`` the trace of the model holds the whole story:

* the **proposal** (RoI) the box head classified, ``trace.heads.proposals[i][roi]`` with
  ``roi = trace.heads.detection_rois[i][d]``, and the **FPN level** its size picked;
* the **refined box**: that RoI moved by the deltas of the detection's class
  (``trace.heads.detections[i]["boxes"][d]``), and the IoU between the two;
* the mask head's **28 x 28 logits** for the detection's class, read at the refined box (at
  inference the mask head sees the detection's box, so its level can differ from the proposal's);
* the mask **pasted** into the image (``roi_heads.paste_masks``).

``detection_path`` gathers those numbers, ``draw_detection_path`` draws them, ``heads_view`` is the
explorer's view function and ``heads_explorer`` the widget (an image slider and a detection slider).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..boxes import box_iou
from ..masks import paste_masks
from ..roi_heads import FIRST_LEVEL, LAST_LEVEL
from ..roi_ops import fpn_level
from ..visualize import draw_box, draw_feature_map, roi_align_box, show_image, to_numpy
from .shell import Explorer, View

__all__ = ["DetectionPath", "HeadsView", "detection_path", "draw_detection_path", "heads_view", "heads_explorer"]

MASK_THRESHOLD = 0.5  # a pasted mask's pixel belongs to the object where its probability is above this


@dataclass(frozen=True)
class DetectionPath:
    """One detection, stage by stage. Boxes ``(x0, y0, x1, y1)`` in the resized image's pixels.

    ``proposal [4]``: the RoI the box head classified; ``box_level``: the FPN level it was read
    from (2 = P2 ... 5 = P5). ``refined [4]``: the detection's box; ``mask_level``: the level the
    mask head read it from. ``iou``: IoU(proposal, refined). ``mask_logits [M, M]``: the logits of
    the detection's own class; ``pasted [h, w]``: its probabilities pasted into the image.
    ``feature [H_l, W_l]``: the box level's FPN map averaged over channels (for drawing);
    ``box_roi_size``: the side of the grid RoIAlign cut for the box head.
    """

    image_index: int
    detection: int
    num_detections: int
    label: int
    class_name: str
    score: float
    roi: int
    proposal: Tensor
    box_level: int
    refined: Tensor
    mask_level: int
    iou: float
    class_scores: Tensor
    mask_logits: Tensor
    pasted: Tensor
    feature: Tensor
    box_roi_size: int = 7

    @property
    def stride(self) -> int:
        """Pixels per feature cell of the box head's level: ``2 ** box_level``."""
        return 2**self.box_level

    @property
    def mask_pixels(self) -> int:
        """Pixels of the pasted mask above ``MASK_THRESHOLD``."""
        return int((self.pasted > MASK_THRESHOLD).sum())


def _name(label: int, class_names: Sequence[str] | None) -> str:
    return class_names[label] if class_names and label < len(class_names) else f"class {label}"


def detection_path(trace, detection: int, image: int = 0, class_names: Sequence[str] | None = None,
                   canonical_size: float = 224.0, aligned: bool = False) -> DetectionPath:
    """Gather detection ``detection`` of image ``image`` from an inference ``trace`` (``model.trace(images)``).

    ``canonical_size`` and ``aligned``: the model's ``config.roi_canonical_size`` (by which the refined
    box's mask level is chosen) and ``config.aligned`` (how the mask is pasted).

    Raises ``ValueError`` when the trace is a training trace or either index is out of range.
    """
    heads = trace.heads
    if heads.detections is None:
        raise ValueError("trace has no detections: trace the model without targets (inference)")
    if not 0 <= image < len(heads.detections):
        raise ValueError(f"image must be in 0..{len(heads.detections) - 1}, got {image}")
    found = heads.detections[image]
    count = len(found["boxes"])
    if not 0 <= detection < count:
        raise ValueError(f"detection must be in 0..{count - 1} (image {image} has {count} detections), got {detection}")
    roi = int(heads.detection_rois[image][detection])
    proposal = heads.proposals[image][roi]
    refined = found["boxes"][detection]
    label = int(found["labels"][detection])
    box_level = int(heads.roi_levels[image][roi])
    mask_level = int(fpn_level(refined[None], FIRST_LEVEL, LAST_LEVEL, canonical_size)[0])
    probabilities = found["masks"][detection : detection + 1]  # [1, 1, M, M]
    pasted = paste_masks(probabilities, refined[None], trace.batch.image_sizes[image], aligned=aligned)[0, 0]  # [h, w]
    feature = trace.features[box_level - FIRST_LEVEL][image].mean(dim=0)  # [H_l, W_l]
    return DetectionPath(
        image_index=image,
        detection=detection,
        num_detections=count,
        label=label,
        class_name=_name(label, class_names),
        score=float(found["scores"][detection]),
        roi=roi,
        proposal=proposal,
        box_level=box_level,
        refined=refined,
        mask_level=mask_level,
        iou=float(box_iou(proposal[None], refined[None])[0, 0]),
        class_scores=heads.class_scores[image][roi],
        mask_logits=heads.detection_mask_logits[image][detection],
        pasted=pasted,
        feature=feature,
        box_roi_size=int(heads.box_features_shape[-1]),
    )


def draw_detection_path(path: DetectionPath, image: Tensor, aligned: bool = False) -> Figure:
    """Four panels: proposal -> refined box; the level's map; the 28 x 28 logits; the pasted mask.

    ``aligned``: the model's RoIAlign setting, for drawing the proposal where RoIAlign reads it.
    """
    figure = Figure(figsize=(11.6, 3.5), layout="constrained")
    ax_boxes, ax_level, ax_logits, ax_pasted = figure.subplots(1, 4)

    show_image(ax_boxes, image)
    draw_box(ax_boxes, to_numpy(path.proposal), color="tab:orange", linestyle="--", label="proposal")
    draw_box(ax_boxes, to_numpy(path.refined), color="tab:cyan", label=f"refined ({path.class_name})")
    # Zoomed to both boxes (with a margin): a few pixels of refinement must be visible.
    both = torch.stack([path.proposal, path.refined])
    (x0, y0), (x1, y1) = both[:, :2].min(dim=0).values.tolist(), both[:, 2:].max(dim=0).values.tolist()
    margin = 0.25 * max(x1 - x0, y1 - y0) + 2
    ax_boxes.set_xlim(x0 - margin, x1 + margin)
    ax_boxes.set_ylim(y1 + margin, y0 - margin)  # y down
    ax_boxes.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8, ncol=1, frameon=False)
    ax_boxes.set_title(f"proposal -> refined box (zoomed)\nIoU {path.iou:.2f}", fontsize=10)

    draw_feature_map(ax_level, path.feature, cmap="viridis", grid=False)
    # Where RoIAlign reads the proposal on this level's map, split into the box head's bins.
    on_map = roi_align_box(to_numpy(path.proposal).tolist(), 1 / path.stride, aligned=aligned)
    bins = path.box_roi_size
    draw_box(ax_level, on_map, bins=(bins, bins), color="tab:orange", linewidth=1.5)
    ax_level.set_title(f"P{path.box_level} (stride {path.stride}), channel mean\nthe box head's {bins} x {bins} bins",
                       fontsize=10)

    logits = to_numpy(path.mask_logits)
    limit = float(np.abs(logits).max()) or 1.0
    shown = ax_logits.imshow(logits, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax_logits.contour(logits, levels=[0.0], colors="black", linewidths=1.0)
    figure.colorbar(shown, ax=ax_logits, fraction=0.046, pad=0.04, label="logit")
    side = logits.shape[-1]
    ax_logits.set_title(f"{side} x {side} logits, class {path.class_name}\n(black: logit 0, p = 0.5)", fontsize=10)
    ax_logits.set_xlabel("x (mask cells)")
    ax_logits.set_ylabel("y (mask cells)")

    show_image(ax_pasted, image)
    pasted = to_numpy(path.pasted)
    overlay = np.zeros((*pasted.shape, 4))
    overlay[..., :3] = (0.0, 0.9, 1.0)
    overlay[..., 3] = 0.6 * pasted  # the probability as opacity
    ax_pasted.imshow(overlay, extent=(0, pasted.shape[1], pasted.shape[0], 0))
    ax_pasted.contour(np.arange(pasted.shape[1]) + 0.5, np.arange(pasted.shape[0]) + 0.5, pasted,
                      levels=[MASK_THRESHOLD], colors="white", linewidths=1.0)
    draw_box(ax_pasted, to_numpy(path.refined), color="tab:cyan", linewidth=1.0)
    ax_pasted.set_title(f"pasted: {path.mask_pixels} px above {MASK_THRESHOLD}", fontsize=10)
    return figure


def _caption(path: DetectionPath) -> str:
    width, height = (float(v) for v in (path.proposal[2:] - path.proposal[:2]))
    return (
        f"Image {path.image_index}, detection {path.detection} of {path.num_detections}: "
        f"{path.class_name}, score {path.score:.3f}. Its proposal (RoI {path.roi}, {width:.0f} x {height:.0f} px) "
        f"was read from P{path.box_level}; the {path.class_name} refinement moved it to a box with "
        f"IoU {path.iou:.2f}; the mask head read that box from P{path.mask_level}."
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
    path = dataclasses.replace(detection_path(trace, detection, 0, class_names, canonical_size, aligned), image_index=image_index)
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
        return heads_view(trace_of(image), detection, image, class_names, draw=draw, aligned=model.config.aligned,
                         canonical_size=model.config.roi_canonical_size)

    return Explorer({"image": image_slider, "detection": detection_slider}, view, draw=draw)
