"""RoI pooling (Fast R-CNN) and RoIAlign (Mask R-CNN) in plain PyTorch, and RoIWarp (MNC) between them.

These ops turn a box of any size on a feature map into a fixed ``output_size`` grid of bins.
They differ in which feature-map cells a bin reads:

* ``roi_pool`` rounds the box to whole cells, splits it into bins with floor/ceil, and takes the
  **max** over the cells inside each bin. Two roundings, so a box that moves by less than a
  cell may give exactly the same output: the quantization error chapter 01 measures.
* ``roi_align`` keeps the box's real-valued coordinates, places ``sampling_ratio`` x
  ``sampling_ratio`` sampling points in each bin, reads each point by **bilinear interpolation**
  from its 4 neighbouring cells, and averages the points.
* ``roi_warp`` rounds the box as ``roi_pool`` does, then reads it as ``roi_align`` does (the
  paper's Table 2(c), middle row: with the rounding kept, bilinear reading alone gains little).

Either way, one output bin is a reduction over a *bag* of feature-map cells: a max over the cells
of the bin (RoIPool), or a weighted sum over 4 neighbours x the sampling points (RoIAlign).
That is exactly what ``torch.nn.functional.embedding_bag`` computes over the rows of a table, so
both ops are written as "list the bag of every bin, then reduce": the feature map becomes a table
with one row per cell (``[N*H*W, C]``), each bin a bag of row indices (and weights). Autograd
sends the gradient of a bin back to the rows in its bag: to the arg-max cell for RoIPool, to every
neighbour in proportion to its bilinear weight for RoIAlign. (RoIAlign's backward is written out by
hand, ``_WeightedBags``: the same sums as PyTorch's, faster on a CPU.)

Coordinates: boxes are ``(x0, y0, x1, y1)`` in image pixels, multiplied by ``spatial_scale``
(1 / stride) to reach the feature map. Feature cell ``(i, j)`` holds the value *at* the point
``(x=j, y=i)`` for bilinear reads. With ``aligned=True`` the box is shifted by half a cell first,
so that a pixel's continuous extent ``[j, j+1]`` lines up with the cell centred at ``j + 0.5``;
``aligned=False`` is the original (slightly misaligned) Detectron behaviour that torchvision keeps
as its default.

Precision: a feature map in float16 or bfloat16 (as convolutions give under ``torch.autocast``)
is read in float32 and the result cast back to the map's dtype, as torchvision's autocast rule for
its RoI kernels does. In 16 bits the box coordinates themselves would round: bfloat16 keeps 8
significant bits, so a box edge at x = 87.3 becomes 87.0 and a bilinear weight of 0.3 becomes
0.30078, enough to move a bin by a third of a cell.

Results agree with ``torchvision.ops.roi_pool`` / ``roi_align`` (tests hold them to 1e-5).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .boxes import box_area
from .inputs import describe_value

__all__ = ["roi_align", "roi_pool", "roi_warp", "roi_align_sampling_points", "roi_pool_bins", "boxes_to_rois",
           "fpn_level", "MultiScaleRoIAlign"]

BoxesArg = Union[Tensor, Sequence[Tensor]]
# ``7`` for a 7 x 7 output, or ``(PH, PW)``.
SizeArg = Union[int, Sequence[int]]
# Adaptive RoIAlign builds at most this many (cell, weight) bag entries at a time (~200 MB).
MAX_BAG_ENTRIES = 2**24


# Checking and normalising the arguments -------------------------------------------------------------------


def _check_input(input: Tensor) -> None:
    if not isinstance(input, Tensor) or input.dim() != 4:
        raise ValueError(f"input must be a 4-D feature map [N, C, H, W], got {describe_value(input)}")


def _pair(output_size: SizeArg) -> tuple[int, int]:
    """``7`` or ``(7, 7)`` -> ``(height, width)``, both positive integers."""
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair of them, got {output_size!r}")
    return size


def boxes_to_rois(boxes: BoxesArg, num_images: int | None = None) -> Tensor:
    """Boxes as ``[K, 5]`` rows ``(batch index, x0, y0, x1, y1)``.

    ``boxes`` is either that tensor already, or a list with one ``[K_i, 4]`` tensor per image.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                f"boxes must be a [K, 5] tensor (batch index, x0, y0, x1, y1) or a list of [K_i, 4] "
                f"tensors, got {describe_value(boxes)}"
            )
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(
                    f"boxes[{i}] must be a [K_i, 4] tensor of (x0, y0, x1, y1), got {describe_value(b)}"
                )
        if len(boxes) == 0:
            raise ValueError("boxes is an empty list: give one [K_i, 4] tensor per image")
        batch_index = torch.cat(
            [torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
        )
        rois = torch.cat([batch_index, torch.cat(list(boxes))], dim=1)
    else:
        raise ValueError(
            f"boxes must be a [K, 5] tensor or a list of [K_i, 4] tensors, got {describe_value(boxes)}"
        )
    if num_images is not None and len(rois) and not (0 <= rois[:, 0].min() and rois[:, 0].max() < num_images):
        raise ValueError(f"boxes name batch indices outside 0..{num_images - 1} of the feature map")
    return rois


LOW_PRECISION = (torch.float16, torch.bfloat16)


def _in_float32(op, input: Tensor, *args) -> Tensor:
    """``op(input, *args)`` computed in float32 when ``input`` is float16/bfloat16 or autocast is on.

    Autocast is switched off inside (nothing in the op may drop back to 16 bits) and the result is
    cast back to ``input``'s dtype, so a caller under autocast gets what it gave. float32 and float64
    maps outside autocast run as they are. Gradients flow through the casts.
    """
    device_type = input.device.type
    if input.dtype not in LOW_PRECISION and not torch.is_autocast_enabled(device_type):
        return op(input, *args)
    with torch.autocast(device_type, enabled=False):
        wide = input.float() if input.dtype in LOW_PRECISION else input
        return op(wide, *args).to(input.dtype)


def _embedding_bag_sum(index: Tensor, table: Tensor, weight: Tensor) -> Tensor:
    """``embedding_bag`` as RoIAlign uses it: bag ``b`` sums ``weight[b, e] * table[index[b, e]]``."""
    return F.embedding_bag(index, table, per_sample_weights=weight, mode="sum")


class _WeightedBags(torch.autograd.Function):
    """``_embedding_bag_sum(index, table, weight)`` with a faster backward.

    ``index, weight [B, E]`` (bag ``b`` sums ``weight[b, e] * table[index[b, e]]``), ``table [R, C]``
    -> ``[B, C]``. The table's gradient is itself a weighted bag sum, over the *transposed* bags: row
    ``r`` receives ``weight[b, e] * grad[b]`` from every entry ``(b, e)`` that reads it. Sorting the
    entries by the row they read makes each row's entries contiguous, and one more ``embedding_bag``
    (with offsets) sums them. PyTorch's own CPU backward of ``embedding_bag`` took 69 ms of a
    Shapes training step's 310 (1280 box RoIs and 128 mask RoIs on P2, a profile); this one takes
    25 (``benchmarks/roi_ops.py`` times both). The weights get no gradient: callers whose weights
    need one (boxes that require grad) use ``embedding_bag`` itself.
    """

    @staticmethod
    def forward(ctx, index: Tensor, table: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(index, weight)
        ctx.num_rows = table.shape[0]
        return _embedding_bag_sum(index, table, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, weight = ctx.saved_tensors
        entries = index.reshape(-1)
        if ctx.num_rows <= torch.iinfo(torch.int32).max:
            entries = entries.int()  # 32-bit keys sort in about half the time of 64-bit ones
        order = torch.sort(entries, stable=True).indices  # grouped by row; within a row, in bag order
        counts = torch.bincount(entries, minlength=ctx.num_rows)
        offsets = torch.cumsum(counts, 0) - counts  # where each row's entries start in ``order``
        bags = torch.div(order, index.shape[1], rounding_mode="floor")  # the bag of each entry
        grad_table = F.embedding_bag(bags, grad.contiguous(), offsets=offsets,
                                     per_sample_weights=weight.reshape(-1).index_select(0, order), mode="sum")
        return None, grad_table, None


def _weighted_bags(index: Tensor, table: Tensor, weight: Tensor) -> Tensor:
    """Each bag's weighted sum of table rows: ``index, weight [B, E]``, ``table [R, C]`` -> ``[B, C]``."""
    if weight.requires_grad:
        return _embedding_bag_sum(index, table, weight)
    return _WeightedBags.apply(index, table, weight)


def _cell_table(input: Tensor) -> Tensor:
    """``[N, C, H, W]`` -> ``[N*H*W, C]``: one row per feature-map cell, row = (n*H + y)*W + x."""
    return input.permute(0, 2, 3, 1).reshape(-1, input.shape[1])


def _zeros_from(input: Tensor, *shape: int) -> Tensor:
    """Zeros ``[*shape]`` in ``input``'s dtype that autograd sees as computed from ``input`` (gradient 0),
    for outputs that read no cell (no RoIs; empty or inverted boxes): a plain ``new_zeros`` would be cut
    off from the graph, and ``backward()`` on it alone would raise where torchvision gives a zero gradient.
    ``input[:0].sum()`` is an exact 0 on the graph (``0 * input.sum()`` is NaN where ``input`` holds inf)."""
    return input.new_zeros(shape) + input[:0].sum()


# RoIAlign -------------------------------------------------------------------------------------------------


def _align_box_geometry(rois: Tensor, spatial_scale: float, aligned: bool) -> tuple[Tensor, Tensor]:
    """Box start and size on the feature map, each ``[K, 2]`` as ``(x, y)``."""
    offset = 0.5 if aligned else 0.0
    start = rois[:, 1:3] * spatial_scale - offset
    size = rois[:, 3:5] * spatial_scale - offset - start
    if not aligned:
        # The legacy behaviour: a box is never treated as smaller than one cell.
        size = size.clamp(min=1.0)
    return start, size


def _sample_coords(start: Tensor, bin_size: Tensor, num_bins: int, grid: int) -> Tensor:
    """Sampling-point coordinates along one axis: ``start, bin_size [K]`` -> ``[K, num_bins, grid]``.

    Point ``g`` of bin ``p`` sits at ``start + p * bin + (g + 0.5) * bin / grid``: the centres of a
    ``grid``-way split of the bin. (Evaluated in that order, as torchvision does, so the floats agree.)
    """
    p = torch.arange(num_bins, dtype=start.dtype, device=start.device)[None, :, None]
    g = torch.arange(grid, dtype=start.dtype, device=start.device)[None, None, :] + 0.5
    bin_size = bin_size[:, None, None]
    return (start[:, None, None] + p * bin_size) + g * bin_size / grid


def _sampling_points(start: Tensor, size: Tensor, output_size, grid) -> tuple[Tensor, Tensor]:
    """Every box's sampling points: ``start, size [K, 2]`` as (x, y) -> ``ys [K, PH, gy]``,
    ``xs [K, PW, gx]``."""
    (out_h, out_w), (gy, gx) = output_size, grid
    xs = _sample_coords(start[:, 0], size[:, 0] / out_w, out_w, gx)
    ys = _sample_coords(start[:, 1], size[:, 1] / out_h, out_h, gy)
    return ys, xs


def _bilinear_neighbours(coords: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """The two cells around each coordinate and their linear weights, along one axis.

    ``coords [...]`` -> ``cells [..., 2]`` (long: lower, upper) and ``weights [..., 2]``.
    A point more than one cell outside the map reads 0 (zero weights). A point between -1 and 0,
    or between ``length - 1`` and ``length``, reads the border cell.
    """
    inside = (coords >= -1.0) & (coords <= length)
    coords = coords.clamp(min=0)
    lower = coords.long().clamp(max=length - 1)
    upper = (lower + 1).clamp(max=length - 1)  # past the last cell both neighbours are the last cell
    frac = coords - lower
    cells = torch.stack([lower, upper], dim=-1)
    weights = torch.stack([1 - frac, frac], dim=-1) * inside[..., None]
    return cells, weights


def _align_fixed_grid(table, rois, start, size, output_size, grid, feature_hw) -> Tensor:
    """RoIAlign for boxes that all use a ``grid = (gy, gx)`` of points per bin -> ``[K, C, PH, PW]``."""
    (out_h, out_w), (gy, gx), (height, width) = output_size, grid, feature_hw
    k = len(rois)
    if gy == 0 or gx == 0:  # degenerate (zero-size or inverted, aligned) boxes sample nothing: output 0
        return _zeros_from(table, k, table.shape[1], out_h, out_w)
    ys, xs = _sampling_points(start, size, (out_h, out_w), (gy, gx))  # [K, PH, gy], [K, PW, gx]
    x_cells, x_weights = _bilinear_neighbours(xs, width)  # [K, PW, gx, 2]
    y_cells, y_weights = _bilinear_neighbours(ys, height)  # [K, PH, gy, 2]

    # The bag of bin (ph, pw): every (y point, y neighbour) x (x point, x neighbour): 4 gy gx cells.
    # Axes: [K, PH, PW, gy, 2, gx, 2].
    image = rois[:, 0].long()[:, None, None, None, None, None, None]
    rows = y_cells[:, :, None, :, :, None, None]
    cols = x_cells[:, None, :, None, None, :, :]
    cell_index = (image * height + rows) * width + cols
    # Each point's bilinear weight is the product of its two axes' weights; points are averaged.
    weight = y_weights[:, :, None, :, :, None, None] * x_weights[:, None, :, None, None, :, :] / (gy * gx)

    bag_size = gy * 2 * gx * 2
    bags, bag_weights = cell_index.reshape(-1, bag_size), weight.reshape(-1, bag_size).to(table.dtype)
    pooled = _weighted_bags(bags, table, bag_weights)  # [K*PH*PW, C]
    return pooled.reshape(k, out_h, out_w, table.shape[1]).permute(0, 3, 1, 2)


def roi_align(
    input: Tensor,
    boxes: BoxesArg,
    output_size: SizeArg,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign: bilinear sampling of each box into a fixed grid -> ``[K, C, PH, PW]``.

    Args:
        input: feature map ``[N, C, H, W]``.
        boxes: ``[K, 5]`` (batch index, x0, y0, x1, y1) or a list of ``[K_i, 4]``, in image pixels.
        output_size: ``PH`` = ``PW`` as an int, or ``(PH, PW)``.
        spatial_scale: feature cells per image pixel (1/stride).
        sampling_ratio: points per bin along each axis; ``<= 0`` picks ``ceil(bin size)`` per box.
        aligned: shift boxes by -0.5 cell so pixel extents and cell centres line up.

    A float16/bfloat16 ``input`` (or any input under autocast) is read in float32; the result has
    ``input``'s dtype.
    """
    _check_input(input)
    rois = boxes_to_rois(boxes, num_images=input.shape[0])
    return _in_float32(_roi_align, input, rois, _pair(output_size), spatial_scale, sampling_ratio, aligned)


def _roi_align(input: Tensor, rois: Tensor, out_hw: tuple[int, int], spatial_scale: float,
               sampling_ratio: int, aligned: bool) -> Tensor:
    """``roi_align`` on checked arguments, in ``input``'s dtype: ``rois [K, 5]`` -> ``[K, C, PH, PW]``."""
    rois = rois.to(input.dtype)
    if len(rois) == 0:
        return _zeros_from(input, 0, input.shape[1], *out_hw)
    table = _cell_table(input)
    feature_hw = tuple(input.shape[-2:])
    start, size = _align_box_geometry(rois, spatial_scale, aligned)
    if sampling_ratio > 0:
        return _align_fixed_grid(table, rois, start, size, out_hw, (sampling_ratio,) * 2, feature_hw)

    # Adaptive: each box samples ceil(bin size) points per axis. Boxes that share a grid are done
    # together; the loop runs over the distinct grids (a handful), never over boxes.
    grids = _adaptive_grid(size, out_hw)  # [K, 2] as (gx, gy)
    output = input.new_zeros(len(rois), input.shape[1], *out_hw)
    for grid_xy in torch.unique(grids, dim=0).tolist():
        members = torch.where((grids == torch.tensor(grid_xy, device=grids.device)).all(dim=1))[0]
        # Large boxes on a fine map sample many points: cap the bag entries built at once.
        chunk = max(1, MAX_BAG_ENTRIES // (out_hw[0] * out_hw[1] * 4 * max(1, grid_xy[0] * grid_xy[1])))
        for part in members.split(chunk):
            output[part] = _align_fixed_grid(
                table, rois[part], start[part], size[part], out_hw, grid_xy[::-1], feature_hw
            )
    return output


def _adaptive_grid(size: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Adaptive sampling, ``ceil(bin size)`` points per bin and axis: ``size [K, 2]`` -> long ``[K, 2]``,
    ``(gx, gy)`` per box. An aligned box inverted along an axis (x1 < x0) has a negative size there,
    hence a negative count; torchvision's loops over it run zero times, so it samples nothing (0)."""
    bins = torch.tensor([out_hw[1], out_hw[0]], dtype=size.dtype, device=size.device)
    return torch.ceil(size / bins).long().clamp(min=0)


def roi_align_sampling_points(box: Sequence[float], output_size: SizeArg, spatial_scale: float = 1.0,
                              sampling_ratio: int = -1, aligned: bool = False) -> tuple[Tensor, Tensor]:
    """Where RoIAlign samples one box: ``ys [PH, gy]`` and ``xs [PW, gx]`` in feature-map cells. The
    points of bin ``(i, j)`` are every pair ``(ys[i, a], xs[j, b])``. For drawing (chapter 01);
    ``roi_align`` computes the same coordinates with the same code."""
    out_h, out_w = _pair(output_size)
    rois = torch.tensor([[0.0, *box]])
    start, size = _align_box_geometry(rois, spatial_scale, aligned)
    if sampling_ratio > 0:
        grid = (sampling_ratio, sampling_ratio)
    else:  # roi_align's adaptive grid: ceil(bin size) points per axis
        gx, gy = _adaptive_grid(size, (out_h, out_w))[0].tolist()
        grid = (gy, gx)
    ys, xs = _sampling_points(start, size, (out_h, out_w), grid)
    return ys[0], xs[0]


# RoIPool, and RoIWarp: its rounded box read as RoIAlign reads ---------------------------------------------


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` sends them to the even integer)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _pool_bin_edges(rois: Tensor, spatial_scale: float, output_size) -> tuple[Tensor, Tensor]:
    """Quantized bins: ``rows [K, PH, 2]`` and ``cols [K, PW, 2]`` as half-open cell ranges, unclipped.

    First quantization: the box is rounded to whole cells, with the inclusive end of Fast R-CNN
    (a box from cell 3 to cell 5 is 3 cells wide). Second: bin ``p`` of a box ``L`` cells long
    covers cells ``floor(p L / P)`` to ``ceil((p + 1) L / P)`` from the box start.
    """
    out_h, out_w = output_size
    start = _round_half_away(rois[:, 1:3] * spatial_scale)  # [K, 2] as (x, y)
    end = _round_half_away(rois[:, 3:5] * spatial_scale)
    length = (end - start + 1).clamp(min=1)

    def edges(start, length, num_bins):
        p = torch.arange(num_bins, dtype=length.dtype, device=length.device)[None, :]
        bin_size = length[:, None] / num_bins
        first = torch.floor(p * bin_size) + start[:, None]
        last = torch.ceil((p + 1) * bin_size) + start[:, None]
        return torch.stack([first, last], dim=-1).long()

    return edges(start[:, 1], length[:, 1], out_h), edges(start[:, 0], length[:, 0], out_w)


def roi_pool(input: Tensor, boxes: BoxesArg, output_size: SizeArg, spatial_scale: float = 1.0) -> Tensor:
    """RoI max pooling over quantized bins (Fast R-CNN) -> ``[K, C, PH, PW]``. Args are as ``roi_align``'s.
    A bin that falls wholly outside the feature map outputs 0. A float16/bfloat16 ``input`` (or any
    input under autocast) is read in float32, as in ``roi_align``."""
    _check_input(input)
    rois = boxes_to_rois(boxes, num_images=input.shape[0])
    return _in_float32(_roi_pool, input, rois, _pair(output_size), spatial_scale)


def _roi_pool(input: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float) -> Tensor:
    """``roi_pool`` on checked arguments, in ``input``'s dtype: ``rois [K, 5]`` -> ``[K, C, PH, PW]``."""
    out_h, out_w = output_size
    rois = rois.to(input.dtype)
    n, c, height, width = input.shape
    k = len(rois)
    if k == 0:
        return _zeros_from(input, 0, c, out_h, out_w)
    row_edges, col_edges = _pool_bin_edges(rois, spatial_scale, (out_h, out_w))
    row_edges, col_edges = row_edges.clamp(0, height), col_edges.clamp(0, width)  # only cells on the map

    # Every bin gets the same number of slots (the longest bin); slots past a bin's end point to an
    # extra row of -inf, which can never win the max.
    span_h = int((row_edges[..., 1] - row_edges[..., 0]).max().clamp(min=1))
    span_w = int((col_edges[..., 1] - col_edges[..., 0]).max().clamp(min=1))
    rows = row_edges[..., :1] + torch.arange(span_h, device=input.device)  # [K, PH, span_h]
    cols = col_edges[..., :1] + torch.arange(span_w, device=input.device)  # [K, PW, span_w]
    row_ok = rows < row_edges[..., 1:]
    col_ok = cols < col_edges[..., 1:]

    # The bag of bin (ph, pw): rows x cols of that bin. Axes: [K, PH, PW, span_h, span_w].
    image = rois[:, 0].long()[:, None, None, None, None]
    cell_index = (image * height + rows[:, :, None, :, None]) * width + cols[:, None, :, None, :]
    in_bin = row_ok[:, :, None, :, None] & col_ok[:, None, :, None, :]
    minus_inf_row = n * height * width
    cell_index = torch.where(in_bin, cell_index, minus_inf_row)

    table = torch.cat([_cell_table(input), input.new_full((1, c), float("-inf"))])
    pooled = F.embedding_bag(cell_index.reshape(k * out_h * out_w, -1), table, mode="max")  # [K*PH*PW, C]
    pooled = torch.where(torch.isinf(pooled) & (pooled < 0), torch.zeros_like(pooled), pooled)  # empty bins
    return pooled.reshape(k, out_h, out_w, c).permute(0, 3, 1, 2)


def roi_pool_bins(box: Sequence[float], output_size: SizeArg,
                  spatial_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """RoIPool's quantized bins for one box: ``rows [PH, 2]``, ``cols [PW, 2]`` (half-open cell ranges).
    For drawing (chapter 01); ``roi_pool`` uses the same edges, clipped to the feature map."""
    rows, cols = _pool_bin_edges(torch.tensor([[0.0, *box]]), spatial_scale, _pair(output_size))
    return rows[0], cols[0]


def roi_warp(input: Tensor, boxes: BoxesArg, output_size: SizeArg, spatial_scale: float = 1.0,
             sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIWarp (MNC; Mask R-CNN's Table 2(c), middle row): RoIPool's rounded box read by RoIAlign's
    bilinear sampling and average -> ``[K, C, PH, PW]``. Args and dtypes are ``roi_align``'s.
    Each corner is quantized as ``roi_pool`` quantizes it: ``x * spatial_scale`` rounded to a whole
    cell, halves away from zero (x0 = 21.9 px on stride 8 is 2.74 cells: cell 3, 24 px). The rounded
    box is then read by ``roi_align`` with ``sampling_ratio`` and ``aligned`` as given: it differs
    from RoIAlign by the rounding alone (up to half a cell per edge). The boxes get no gradient."""
    _check_input(input)
    rois = boxes_to_rois(boxes, num_images=input.shape[0])
    # Whole cells, back in image pixels (exact where the scale is a power of 2, as the FPN's are).
    rois = torch.cat([rois[:, :1], _round_half_away(rois[:, 1:] * spatial_scale) / spatial_scale], dim=1)
    return _in_float32(_roi_align, input, rois, _pair(output_size), spatial_scale, sampling_ratio, aligned)


# Several FPN levels: each box is read from the level that suits its size ----------------------------------


def fpn_level(boxes: Tensor, min_level: int, max_level: int, canonical_size: float = 224.0,
              canonical_level: int = 4) -> Tensor:
    """The FPN paper's rule, eq. (1): ``k = floor(k0 + log2(sqrt(wh) / 224))``, clamped -> ``[K]`` level.

    ``boxes [K, 4]``; the levels are int64. A 224 x 224 box (ImageNet's size) goes to level 4
    (stride 16); a box half as wide, one level finer.
    """
    sizes = torch.sqrt(box_area(boxes))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size) + 1e-6)
    return levels.clamp(min=min_level, max=max_level).to(torch.int64)


def _level_scale(feature: Tensor, image_size: tuple[int, int]) -> float:
    """``feature`` cells per image pixel, as the nearest power of 2 (the FPN's strides are 2^k)."""
    return 2.0 ** round(torch.log2(torch.tensor(feature.shape[-2] / image_size[0])).item())


class MultiScaleRoIAlign:
    """RoIAlign (or RoIPool, RoIWarp) over an FPN: every box is read from the level its size picks.

    Args:
        output_size: ``S`` of the ``S x S`` output.
        sampling_ratio, aligned: as ``roi_align``'s.
        op: ``(input, rois, output_size, spatial_scale, sampling_ratio, aligned)``, as ``roi_align`` and
            ``roi_warp`` (torchvision's kernel, or ``roi_pool`` wrapped, can stand in).
        canonical_size: the side of a box that ``fpn_level`` reads from level 4 (224, ImageNet's size,
            in the FPN paper); a box half that size is read one level finer.
    The output has the features' dtype; float16/bfloat16 features are read in float32 (see ``roi_align``)
    and the level of each box is computed in float32.
    """

    def __init__(self, output_size: int, sampling_ratio: int = 2, aligned: bool = False,
                 op: Callable | None = None, canonical_size: float = 224.0):
        self.output_size = output_size
        self.canonical_size = canonical_size  # the box size read from level 4 (``fpn_level``)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.op = op if op is not None else roi_align

    def __call__(self, features: Sequence[Tensor], boxes: Sequence[Tensor],
                 image_sizes: Sequence[tuple[int, int]]) -> Tensor:
        """``features``: the levels to read, finest first, each ``[N, C, H_l, W_l]``; ``boxes``: per image
        ``[K_i, 4]``; ``image_sizes``: each image's ``(h, w)`` -> ``[K, C, S, S]``, images in order."""
        largest_image = (max(h for h, _ in image_sizes), max(w for _, w in image_sizes))
        scales = [_level_scale(f, largest_image) for f in features]
        min_level, max_level = round(-math.log2(scales[0])), round(-math.log2(scales[-1]))
        rois = boxes_to_rois(list(boxes))
        # The level rule's log2 in 16 bits would misplace boxes near a boundary.
        if rois.dtype in LOW_PRECISION:
            rois = rois.float()
        # [K]: each box's level, 0 = the finest.
        levels = fpn_level(rois[:, 1:], min_level, max_level, self.canonical_size) - min_level
        first = features[0]
        output = first.new_zeros(len(rois), first.shape[1], self.output_size, self.output_size)
        for level, (feature, scale) in enumerate(zip(features, scales)):  # a loop over the 4 levels
            members = torch.where(levels == level)[0]
            pooled = self.op(feature, rois[members], self.output_size, scale, self.sampling_ratio,
                             self.aligned)
            output[members] = pooled.to(output.dtype)
        return output
