"""Chapter 05's explorer: drag a predicted box and watch the losses and the IoU respond.

One ground-truth object of one image is fixed. The reader moves a *predicted box* (``x, y, w, h``
sliders, in the pixels of the image the network saw), sets the *score* the classifier gives the
object's class, and a *mask threshold*. For that box the explorer computes what training would:

* box loss: smooth L1 between the predicted box and the ground truth, both encoded as deltas
  against one fixed proposal (the model's proposal that overlaps the object best), with the box
  head's weights ``(10, 10, 5, 5)``; one RoI's term, before the division by the number of sampled RoIs;
* classification loss: cross-entropy ``-log(score)`` of the object's class;
* mask loss: the shipped model's mask head run on the predicted box (as at inference, where it reads
  the detection box), its logits for the object's class against the ground-truth mask cut out at
  the box (as ``RoIHeads.mask_targets`` cuts it), per-pixel sigmoid BCE;
* box IoU, and the mask IoU of the predicted mask pasted into the image and thresholded.

The threshold changes only the binary mask (and its IoU): the loss trains the probabilities.

``loss_scene`` does the slow part once (the image's features); ``losses_for_box`` is the plain
function of the controls' values that tests call; ``loss_view`` draws it; ``loss_explorer`` wraps
it in sliders.
"""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from .. import boxes as box_ops
from ..losses import SMOOTH_L1_BETA, mask_loss, smooth_l1
from ..masks import mask_targets, paste_masks
from ..visualize import class_name, draw_box, to_numpy
from .shell import Explorer, View

__all__ = ["LossScene", "BoxLosses", "loss_scene", "losses_for_box", "LossView", "loss_view", "loss_explorer"]


@dataclass
class LossScene:
    """One image as the network saw it, its features, and the ground-truth object the losses aim at."""

    model: object  # the MaskRCNN (eval mode) whose mask head predicts the masks
    image: Tensor  # [3, H, W] in 0..1, the resized image (all boxes below are in its pixels)
    features: list  # P2..P5, each [1, C, h_l, w_l]
    gt_box: Tensor  # [4]
    gt_mask: Tensor  # [H, W] uint8
    label: int  # the object's class
    class_name: str
    proposal: Tensor  # [4]: the reference box the deltas are measured against


@dataclass
class BoxLosses:
    """Every number the explorer shows for one predicted box."""

    box: Tensor  # [4] the predicted box (x0, y0, x1, y1)
    iou: float  # box IoU with the ground truth
    predicted_deltas: Tensor  # [4]: the predicted box encoded against the proposal
    target_deltas: Tensor  # [4]: the ground truth encoded against the proposal
    box_loss: float  # smooth L1 (beta = 1/9) summed over the 4 deltas
    score: float
    classification_loss: float  # -log(score)
    mask_logits: Tensor  # [M, M] the object's class's logits at the predicted box
    mask_target: Tensor  # [M, M] the ground-truth mask cut out at the predicted box
    mask_loss: float  # mean per-pixel sigmoid BCE
    mask_threshold: float
    pasted_mask: Tensor  # [H, W] bool: the predicted mask pasted into the image, thresholded
    mask_iou: float  # of pasted_mask with the ground-truth mask

    @property
    def total(self) -> float:
        return self.box_loss + self.classification_loss + self.mask_loss


@dataclass
class LossView(View):
    """The explorer's view, with the numbers behind it (``result``) for tests and checked cells."""

    result: BoxLosses | None = None


def loss_scene(model, image: Tensor, target: dict, object_index: int = 0) -> LossScene:
    """Run the model once on ``image [3, H, W]`` and fix object ``object_index`` of ``target``.

    ``target`` as the dataset gives it (``boxes``, ``labels``, ``masks`` in the image's pixels); it is
    resized with the image if the model resizes.
    """
    num_objects = len(target["boxes"])
    if not 0 <= object_index < num_objects:
        raise ValueError(f"object_index must be in 0..{num_objects - 1} for a target with {num_objects} "
                         f"objects, got {object_index}")
    trace = model.trace(image)
    (height, width), (scale_y, scale_x) = trace.batch.image_sizes[0], trace.scales[0]
    gt_box = target["boxes"][object_index].float() * torch.tensor([scale_x, scale_y, scale_x, scale_y])
    mask = target["masks"][object_index][None, None].float()  # [1, 1, H0, W0]
    gt_mask = F.interpolate(mask, size=(height, width), mode="nearest")
    label = int(target["labels"][object_index])
    proposals = trace.proposals[0]  # [P, 4]
    proposal = proposals[box_ops.box_iou(gt_box[None], proposals)[0].argmax()]
    name = class_name(label, model.config.class_names)
    return LossScene(model, trace.image(0), [f[:1] for f in trace.features[:4]], gt_box,
                     gt_mask[0, 0].to(torch.uint8), label, name, proposal)


def box_from_sliders(x: float, y: float, w: float, h: float) -> Tensor:
    """Top-left corner and size -> ``[4]`` box ``(x0, y0, x1, y1)``."""
    return torch.tensor([x, y, x + w, y + h], dtype=torch.float32)


@torch.no_grad()
def losses_for_box(scene: LossScene, box: Tensor, score: float, mask_threshold: float) -> BoxLosses:
    """The losses (and IoUs) training would give ``box [4]`` as the prediction for the scene's object."""
    if not 0 < score <= 1:
        raise ValueError(f"score must be in (0, 1], got {score}")
    heads = scene.model.roi_heads
    box = box.float()
    # Box: both boxes as deltas against the same proposal, as the box head regresses them.
    predicted_deltas = heads.box_coder.encode(box, scene.proposal)
    target_deltas = heads.box_coder.encode(scene.gt_box, scene.proposal)
    box_loss = smooth_l1(predicted_deltas, target_deltas, SMOOTH_L1_BETA).item()
    # Classification: the object's class gets probability `score`, the other classes share the rest.
    num_classes = scene.model.config.num_classes
    probabilities = torch.full((num_classes,), (1 - score) / (num_classes - 1))
    probabilities[scene.label] = score
    logits = probabilities.clamp(min=1e-12).log()[None]  # [1, K]
    classification_loss = F.cross_entropy(logits, torch.tensor([scene.label])).item()
    # Mask: the mask head at the box; the target cut out of the ground truth at the same box.
    height, width = scene.image.shape[-2:]
    all_logits, _ = heads.predict_masks(scene.features, [box[None]], [(height, width)])  # [1, K, M, M]
    size = all_logits.shape[-1]
    aligned = scene.model.config.aligned
    target = mask_targets(scene.gt_mask[None], box[None], torch.zeros(1, dtype=torch.int64), size,
                          aligned=aligned)  # [1, M, M]
    loss = mask_loss(all_logits, torch.tensor([scene.label]), target).item()
    own_logits = all_logits[0, scene.label]
    probabilities = torch.sigmoid(own_logits)[None, None]  # [1, 1, M, M]
    pasted = paste_masks(probabilities, box[None], (height, width), aligned=aligned)[0, 0]
    pasted = pasted > mask_threshold
    gt = scene.gt_mask.bool()
    union = (pasted | gt).sum().item()
    mask_iou = (pasted & gt).sum().item() / union if union else 0.0
    return BoxLosses(
        box=box, iou=box_ops.box_iou(box[None], scene.gt_box[None]).item(),
        predicted_deltas=predicted_deltas, target_deltas=target_deltas, box_loss=box_loss,
        score=float(score), classification_loss=classification_loss,
        mask_logits=own_logits, mask_target=target[0], mask_loss=loss,
        mask_threshold=float(mask_threshold), pasted_mask=pasted, mask_iou=mask_iou,
    )


def caption(result: BoxLosses, class_name: str) -> str:
    """One line with every number (plain text)."""
    return (
        f"box IoU {result.iou:.3f} · box loss (smooth L1 of the deltas) {result.box_loss:.3f} · "
        f"classification -log({result.score:.2f}) = {result.classification_loss:.3f} · "
        f"mask BCE ({class_name}'s mask) {result.mask_loss:.3f} · "
        f"mask IoU at threshold {result.mask_threshold:.2f}: {result.mask_iou:.3f}"
    )


def draw_losses(scene: LossScene, result: BoxLosses, figure: Figure | None = None) -> Figure:
    """Four panels: the image with the boxes and the pasted mask, the 28x28 target, the predicted
    probabilities with the threshold's contour, and the three losses as bars."""
    figure = figure if figure is not None else Figure(figsize=(12, 3.3), layout="constrained")
    ax_image, ax_target, ax_mask, ax_bars = figure.subplots(1, 4, width_ratios=[1, 1, 1, 1.2])
    height, width = scene.image.shape[-2:]
    extent = (0, width, height, 0)  # pixel (i, j) covers [j, j+1] x [i, i+1], the boxes' frame
    ax_image.imshow(to_numpy(scene.image).transpose(1, 2, 0), extent=extent)
    overlay = np.zeros((height, width, 4))
    overlay[..., :3] = (1.0, 0.55, 0.0)
    overlay[..., 3] = to_numpy(result.pasted_mask) * 0.5
    ax_image.imshow(overlay, extent=extent)
    draw_box(ax_image, scene.gt_box, color="lime", linewidth=1.5, label="ground truth")
    draw_box(ax_image, scene.proposal, color="white", linestyle="--", linewidth=1.2, label="proposal")
    draw_box(ax_image, result.box, color="orange", linewidth=1.5, label="prediction")
    ax_image.set(xlim=(0, width), ylim=(height, 0))
    ax_image.set_title(f"box IoU {result.iou:.2f}, mask IoU {result.mask_iou:.2f}", fontsize=9)
    ax_image.legend(loc="lower right", fontsize=7, framealpha=0.6)
    ax_image.set_axis_off()

    ax_target.imshow(to_numpy(result.mask_target), cmap="gray", vmin=0, vmax=1)
    ax_target.set_title("target: ground truth at the box", fontsize=9)
    probabilities = to_numpy(torch.sigmoid(result.mask_logits))
    ax_mask.imshow(probabilities, cmap="viridis", vmin=0, vmax=1)
    if probabilities.min() < result.mask_threshold < probabilities.max():
        ax_mask.contour(probabilities, levels=[result.mask_threshold], colors="orange", linewidths=1.2)
    ax_mask.set_title(f"sigmoid of the {scene.class_name} logits", fontsize=9)
    for ax in (ax_target, ax_mask):
        ax.set_xticks([])
        ax.set_yticks([])

    names = ["box\n(smooth L1)", "class\n(-log score)", "mask\n(BCE)"]
    values = [result.box_loss, result.classification_loss, result.mask_loss]
    bars = ax_bars.barh(names, values, color=["tab:orange", "tab:blue", "tab:green"])
    ax_bars.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2, fontsize=8)
    ax_bars.set_xlim(0, max(2.0, 1.3 * max(values)))
    ax_bars.invert_yaxis()
    ax_bars.set_xlabel("loss")
    ax_bars.set_title(f"losses, total {result.total:.3f}", fontsize=9)
    return figure


def loss_view(scene: LossScene, x: float, y: float, w: float, h: float, score: float, mask_threshold: float,
              draw: bool = True) -> LossView:
    """The explorer's view: the losses of the box ``(x, y, w, h)``, drawn (or an empty figure if not
    ``draw``)."""
    result = losses_for_box(scene, box_from_sliders(x, y, w, h), score, mask_threshold)
    figure = draw_losses(scene, result) if draw else Figure()
    return LossView(figure, caption(result, scene.class_name), result)


def loss_explorer(model, image: Tensor, target: dict, object_index: int = 0, draw: bool = True) -> Explorer:
    """Sliders for the predicted box (starting on the proposal), the score and the mask threshold."""
    scene = loss_scene(model, image, target, object_index)
    height, width = scene.image.shape[-2:]
    x0, y0, x1, y1 = (round(v, 1) for v in scene.proposal.tolist())
    slider = dict(step=0.5, continuous_update=False, readout_format=".1f")
    controls = {
        "x": widgets.FloatSlider(value=x0, min=-width / 2, max=width, description="x (left)", **slider),
        "y": widgets.FloatSlider(value=y0, min=-height / 2, max=height, description="y (top)", **slider),
        "w": widgets.FloatSlider(value=round(x1 - x0, 1), min=2, max=width, description="width", **slider),
        "h": widgets.FloatSlider(value=round(y1 - y0, 1), min=2, max=height, description="height", **slider),
        "score": widgets.FloatSlider(value=0.9, min=0.01, max=1.0, step=0.01, continuous_update=False,
                                     description=f"score of '{scene.class_name}'"),
        "mask_threshold": widgets.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05,
                                              continuous_update=False, description="mask threshold"),
    }
    explorer = Explorer(controls, lambda **values: loss_view(scene, draw=draw, **values), draw=draw)
    explorer.scene = scene
    return explorer

