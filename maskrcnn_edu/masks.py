"""Masks meet boxes: the mask head's training targets, and its 28 x 28 outputs pasted into the image.

* ``mask_targets``: each positive RoI's target, its object's mask cut out at the RoI by RoIAlign.
* ``paste_masks``: each detection's small mask resized into its box, in the whole image (two
  separable interpolation matrices per mask, one matrix product each); ``binary_masks_in_chunks``
  pastes a few detections at a time, so that a large photograph never holds 100 full-size masks.
* ``rescore_by_mask_overlap`` (optional, ``Config.mask_overlap_rescore``, off in the paper's model):
  a detection whose mask lies on pixels that better detections already hold loses that share of its score.

``Config.aligned`` chooses the half-pixel convention for all of them at once (see ``docs/design.md``).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .roi_ops import roi_align

__all__ = ["mask_targets", "paste_masks", "binary_masks_in_chunks", "claimed_share",
           "rescore_by_mask_overlap"]

# Floats one pasting step may hold: 2**24 is 64 MB, one 4000 x 4000 mask (and one mask at least).
PASTE_CHUNK_VALUES = 2 ** 24


def mask_targets(gt_masks: Tensor, proposals: Tensor, matched: Tensor, size: int, op: Callable = roi_align,
                 aligned: bool = False) -> Tensor:
    """Each positive proposal's target: its object's mask cut out at the proposal -> ``[P, size, size]``.

    ``gt_masks [G, H, W]``, ``proposals [P, 4]``, ``matched [P]`` (object index). RoIAlign (``op``:
    ours or torchvision's kernel) over the binary masks does the cropping and resizing (adaptive
    sampling). ``aligned=False`` is torchvision's convention (the crop sits half a pixel off the
    box); ``aligned=True`` puts pixel centres at +0.5, as ``paste_masks(aligned=True)`` reads them back.
    """
    rois = torch.cat([matched[:, None].to(proposals), proposals], dim=1)
    return op(gt_masks[:, None].to(rois), rois, (size, size), 1.0, -1, aligned)[:, 0]


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int = 1,
                aligned: bool = False) -> Tensor:
    """Paste ``M x M`` mask probabilities ``[N, 1, M, M]`` into their ``boxes [N, 4]`` -> ``[N, 1, H, W]``.

    ``aligned=True``: every pixel centre ``(x + 0.5, y + 0.5)`` reads the mask where it falls in the
    box, by bilinear interpolation, the box kept to the sub-pixel (``_sample_matrix``; what
    ``F.grid_sample(align_corners=False)`` would do, zero beyond the mask's outer cell centres).
    Paired with ``mask_targets(aligned=True)``, a ground-truth mask cut to 28 x 28 and pasted back
    keeps an IoU of 0.997 on Shapes, against 0.943 for torchvision's convention below.

    ``aligned=False``, torchvision's ``paste_masks_in_image``: each mask is padded by one zero cell
    (so its edge fades out) and the box grown by the same ratio, then resized to the box's
    whole-pixel size by bilinear interpolation. Bilinear resizing is separable, so resizing is two
    matrix products: ``rows [H, M'] @ mask [M', M'] @ cols [M', W]``, where each matrix row holds
    the 2 interpolation weights of one image row (or column), and is all zero outside the box. One
    batched product does every mask at once.
    """
    n = len(masks)
    height, width = image_size
    if n == 0:
        return masks.new_zeros(0, 1, height, width)
    if aligned:
        rows = _sample_matrix(boxes[:, 1], boxes[:, 3], masks.shape[-2], height, masks.dtype)  # [N, H, M]
        cols = _sample_matrix(boxes[:, 0], boxes[:, 2], masks.shape[-1], width, masks.dtype)  # [N, W, M]
        return (rows @ masks[:, 0] @ cols.transpose(1, 2))[:, None]
    size = masks.shape[-1]
    padded = F.pad(masks[:, 0], (padding,) * 4)  # [N, M', M']
    scale = (size + 2 * padding) / size
    half_w, half_h = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale, (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    centre_x, centre_y = (boxes[:, 2] + boxes[:, 0]) * 0.5, (boxes[:, 3] + boxes[:, 1]) * 0.5
    grown = torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], 1)
    grown = grown.to(torch.int64)  # whole pixels, truncated toward zero
    rows = _resize_matrix(grown[:, 1], grown[:, 3], padded.shape[-2], height, padded.dtype)  # [N, H, M']
    cols = _resize_matrix(grown[:, 0], grown[:, 2], padded.shape[-1], width, padded.dtype)  # [N, W, M']
    return (rows @ padded @ cols.transpose(1, 2))[:, None]


def binary_masks_in_chunks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], aligned: bool = False,
                           threshold: float = 0.5, max_values: int | None = None) -> Iterator[Tensor]:
    """``paste_masks`` a few detections at a time: mask probabilities ``[D, 1, M, M]`` and their
    ``boxes [D, 4]`` -> bool ``[c, H, W]`` chunks (pixels ``> threshold``) of consecutive detections.

    Each chunk pastes at most ``max_values`` floats (default ``PASTE_CHUNK_VALUES``; at least one
    mask), so a 4000 x 3000 photo with 100 detections never holds the 4.8 GB of its 100 float masks
    at once; the chunks, concatenated, equal ``paste_masks(...)[:, 0] > threshold``.
    """
    height, width = image_size
    max_values = PASTE_CHUNK_VALUES if max_values is None else max_values
    step = max(1, max_values // max(1, height * width))
    for start in range(0, len(masks), step):
        chunk = slice(start, start + step)
        pasted = paste_masks(masks[chunk], boxes[chunk], image_size, aligned=aligned)
        yield pasted[:, 0] > threshold


def _sample_matrix(start: Tensor, end: Tensor, source_length: int, image_length: int, dtype) -> Tensor:
    """Bilinear weights that read ``source_length`` cells spread over the span ``start..end``
    (continuous pixel coordinates, ``[N]`` each) at the pixel centres ``0.5, 1.5, ...`` ->
    ``[N, image_length, source_length]``.

    Cell ``i``'s centre lies at ``start + (i + 0.5) * (end - start) / source_length``. A pixel centre
    between two cell centres takes both, weighted by nearness; beyond the outer cell centres the
    missing neighbour counts as zero, so the mask fades out within half a cell of the box.
    """
    pixel = torch.arange(image_length, device=start.device, dtype=torch.float32) + 0.5  # [L]
    span = (end - start).to(torch.float32).clamp(min=1e-6)[:, None]
    # [N, L]: where each pixel centre falls on the source axis, in cells (cell i's centre at i).
    source = (pixel[None, :] - start.to(torch.float32)[:, None]) / span * source_length - 0.5
    lower = torch.floor(source)
    frac = (source - lower).to(dtype)
    lower = lower.to(torch.int64)
    weights = torch.zeros(len(start), image_length, source_length, dtype=dtype, device=start.device)
    for cell, weight in ((lower, 1 - frac), (lower + 1, frac)):  # the two neighbours
        valid = (cell >= 0) & (cell < source_length)
        weights.scatter_add_(2, cell.clamp(0, source_length - 1)[..., None], (weight * valid)[..., None])
    return weights


def _resize_matrix(start: Tensor, end: Tensor, source_length: int, image_length: int, dtype) -> Tensor:
    """Bilinear resize weights (``align_corners=False``) of a source axis onto the pixels ``start..end``.

    ``start, end [N]`` whole pixels (inclusive) -> ``[N, image_length, source_length]``; rows of
    pixels outside ``start..end`` (or the image) are zero.
    """
    length = (end - start + 1).clamp(min=1)  # [N] pixels the mask covers
    pixel = torch.arange(image_length, device=start.device)
    offset = pixel[None, :] - start[:, None]  # [N, L]: pixel index inside the box
    inside = (offset >= 0) & (offset < length[:, None])
    # Source coordinate of each pixel centre, as F.interpolate computes it (in float32).
    ratio = (torch.tensor(float(source_length), dtype=torch.float32) / length.to(torch.float32))[:, None]
    source = ((offset.to(torch.float32) + 0.5) * ratio - 0.5).clamp(min=0)
    lower = source.to(torch.int64).clamp(max=source_length - 1)
    upper = (lower + 1).clamp(max=source_length - 1)
    frac = (source - lower).to(dtype)
    weights = torch.zeros(len(start), image_length, source_length, dtype=dtype, device=start.device)
    weights.scatter_add_(2, lower[..., None], ((1 - frac) * inside)[..., None])
    weights.scatter_add_(2, upper[..., None], (frac * inside)[..., None])
    return weights


def claimed_share(masks: Tensor, before: Tensor | None = None) -> Tensor:
    """Binary ``masks [D, H, W]``, best first -> ``[D]``: the share of each mask's pixels that the masks
    before it already hold (0 for an empty mask). ``torch.cummax`` along the masks is a running OR of
    them; shifted by one row, it is each mask's union of the masks before it. ``before [H, W]``: pixels
    already held by earlier detections (the union of the chunks before these masks)."""
    flat = masks.flatten(1)  # [D, H*W]
    first = torch.zeros_like(flat[:1]) if before is None else before.reshape(1, -1)
    # Row k: the union of `before` and masks 0..k-1.
    claimed = torch.cummax(torch.cat([first, flat]), dim=0).values[:-1]
    return (flat & claimed).sum(1) / flat.sum(1).clamp(min=1)


def rescore_by_mask_overlap(detection: dict, mask_threshold: float = 0.5,
                            binary_chunks: Iterable[Tensor] | None = None) -> tuple[dict, Tensor]:
    """Lower each detection's score by the share of its mask that better detections already cover.

    ``detection``: one image's ``boxes [D, 4]``, ``labels [D]``, ``scores [D]``, best first (as
    post-processing leaves them), and pasted ``masks [D, 1, H, W]`` of probabilities. Detection
    ``k``'s mask (its pixels ``> mask_threshold``) has ``a_k`` pixels, of which ``c_k`` already
    belong to the masks of detections ``0 .. k-1``, of any class. Its score becomes
    ``score_k * (1 - c_k / a_k)``: the best detection keeps its score, one whose mask lies wholly
    inside better ones falls to 0, and an empty mask claims nothing, so it keeps its score. The
    detections come back re-sorted by the new scores; none is removed. Returns ``(rescored, order)``:
    ``order [D]`` holds, for each detection of ``rescored``, its index in ``detection``.

    Why: NMS compares the boxes of one class. A box on a fragment of a partly hidden object, or
    across two objects, overlaps each object's own box by IoU < 0.5 and survives it, although the
    pixels it claims are already taken. Objects' visible masks do not overlap, so a second claim on
    the same pixels is evidence against it. The score is lowered, not zeroed (a soft decay, as in
    Soft-NMS and SOLOv2's Matrix NMS): a true object whose predicted mask spills into a neighbour's
    ranks lower instead of vanishing. Not in torchvision's model; ``Config.mask_overlap_rescore``.

    ``binary_chunks``: the detections' binary masks as consecutive ``[c, H, W]`` chunks
    (``binary_masks_in_chunks``), when ``detection["masks"]`` holds them unpasted.
    """
    scores = detection["scores"]
    if len(scores) == 0:
        return dict(detection), torch.zeros(0, dtype=torch.int64, device=scores.device)
    if binary_chunks is None:
        binary_chunks = [detection["masks"][:, 0] > mask_threshold]
    shares, before = [], None
    for chunk in binary_chunks:
        shares.append(claimed_share(chunk, before))
        held = chunk.any(0)
        before = held if before is None else before | held
    covered = torch.cat(shares)  # [D], in 0..1
    new_scores = scores * (1 - covered.to(scores.dtype))
    order = torch.argsort(new_scores, descending=True, stable=True)
    rescored = {key: value[order] for key, value in detection.items()}
    rescored["scores"] = new_scores[order]
    return rescored, order
