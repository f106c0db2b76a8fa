"""Chapter 01's exercises: one bilinear sample, RoIAlign of one box, RoIPool of one box."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import reference, roi_ops
from .checking import Case, Checker, Exercise, tensors

__all__ = ["EXERCISES", "CHECKS"]

BILINEAR_SAMPLE = Exercise(
    name="bilinear_sample",
    chapter="01",
    title="One bilinear sample",
    task="""\
Write `bilinear_sample(feature, y, x)`: the value of a feature map `feature [C, H, W]` at the real
point `(y, x)`, read from its four neighbouring cells as in section 2.1, returned as `[C]`. Cell
`(i, j)` holds the value *at* the point `(y=i, x=j)`. At the border, do what RoIAlign does:

- a point more than one cell outside the map (`y < -1`, `y > H`, `x < -1` or `x > W`) reads zeros;
- otherwise clamp `y` into `[0, H - 1]` and `x` into `[0, W - 1]`; on the last row (column) both
  neighbours are that row (column).

Example: on the 3 x 4 map of section 5, whose cell `(y, x)` holds `4y + x`,
`bilinear_sample(tiny[0], 0.5, 1.5)` is `tensor([3.5])`.""",
    stub='''\
import torch


def bilinear_sample(feature, y, x):
    """The value of feature [C, H, W] at the real point (y, x) -> [C]."""
    raise NotImplementedError  # your turn
''',
    hint="""\
Clamp first, then take `y_low = int(y)`, `y_high = min(y_low + 1, H - 1)` and `ly = y - y_low` (the
same along x). The four weights are `(1 - ly)(1 - lx)`, `(1 - ly) lx`, `ly (1 - lx)` and `ly lx`.""",
)

ROI_ALIGN_BOX = Exercise(
    name="roi_align_box",
    chapter="01",
    title="RoIAlign of one box",
    task="""\
Write `roi_align_box(feature, box, output_size, spatial_scale, sampling_ratio, aligned)`: RoIAlign of
one box `(x0, y0, x1, y1)` (a tensor `[4]`, in image pixels) on `feature [C, H, W]`, returned as
`[C, P, P]` for `P = output_size`. Follow section 2:

- the box on the map starts at `x0 * spatial_scale - offset` and ends at `x1 * spatial_scale - offset`,
  with `offset = 0.5` when `aligned` is true, else 0; with `aligned=False` a box narrower (shorter)
  than one cell is widened (lengthened) to one cell, keeping its start;
- split it into `P x P` equal bins; bin `(i, j)` has `sampling_ratio x sampling_ratio` points (here
  always at least 1), at the centres of its equal sub-cells: `y = start_y + i * bin_h + (a + 0.5) *
  bin_h / sampling_ratio`, likewise `x`;
- each point is read by bilinear interpolation (your `bilinear_sample` above, borders included), and
  the bin is the mean of its points.

Example: on the map `4y + x`, the box `(1, 0, 2, 1)` with `output_size=1`, `spatial_scale=1`,
`sampling_ratio=1`, `aligned=False` has one point, `(y=0.5, x=1.5)`: `tensor([[[3.5]]])`.""",
    stub='''\
import torch


def roi_align_box(feature, box, output_size, spatial_scale, sampling_ratio, aligned):
    """RoIAlign of one box [4] (x0, y0, x1, y1, in pixels) on feature [C, H, W] -> [C, P, P]."""
    raise NotImplementedError  # your turn
''',
    hint="""\
Four nested loops (bin row, bin column, point row, point column) that add up `bilinear_sample` and
divide by the number of points are enough. Compute the box's start and size once, before the loops.""",
)

ROI_POOL_BOX = Exercise(
    name="roi_pool_box",
    chapter="01",
    title="RoIPool of one box",
    task="""\
Write `roi_pool_box(feature, box, output_size, spatial_scale)`: Fast R-CNN's RoIPool of one box
`(x0, y0, x1, y1)` (a tensor `[4]`, in pixels) on `feature [C, H, W]` -> `[C, P, P]`, with the
roundings of torchvision's kernel (section 1):

- multiply each edge by `spatial_scale` and round it to the nearest cell, halves away from zero (C's
  `round`: 2.5 -> 3; `torch.round` sends 2.5 to 2); the box covers the cells `start` to `end`
  *inclusive*, `L = max(end - start + 1, 1)` cells along each axis;
- bin `p` of `P` covers the cells from `start + floor(p L / P)` up to, not including,
  `start + ceil((p + 1) L / P)`, clipped to the map (`0 .. H` rows, `0 .. W` columns);
- each bin outputs the max of its cells, per channel; a bin with no cell on the map outputs 0.

Example: on the map `4y + x` (3 x 4), the box `(0, 0, 3, 2)` with `output_size=2`, `spatial_scale=1`
gives `tensor([[[5., 7.], [9., 11.]]])`.""",
    stub='''\
import math

import torch


def roi_pool_box(feature, box, output_size, spatial_scale):
    """RoIPool of one box [4] (x0, y0, x1, y1, in pixels) on feature [C, H, W] -> [C, P, P]."""
    raise NotImplementedError  # your turn
''',
    hint="""\
`math.floor(abs(v) + 0.5)` with `v`'s sign is C's round. Compute the bin size `L / P` once, then
for each bin slice `feature[:, rows, cols]` and take `amax(dim=(1, 2))` when the slice is not empty.""",
)


def _tiny() -> Tensor:
    """The 3 x 4 map of chapter 01, section 5: cell (y, x) holds 4y + x. ``[1, 3, 4]``."""
    return torch.arange(12.0).reshape(1, 3, 4)


def _bilinear_cases() -> list[Case]:
    tiny = _tiny()
    cases = [Case("by hand", (tiny, y, x)) for y, x in [(0.5, 1.5), (0.3, 1.25), (1.0, 2.0), (2.0, 3.0)]]
    cases += [Case("one-cell band outside the map", (tiny, y, x))
              for y, x in [(-0.5, 1.5), (2.7, 3.4), (1.2, -1.0), (3.0, 4.0)]]
    cases += [Case("beyond the band", (tiny, y, x)) for y, x in [(-1.5, 1.0), (1.0, 4.2), (3.01, 0.0)]]
    generator = torch.Generator().manual_seed(1)
    feature = torch.randn(3, 5, 6, generator=generator)
    points = torch.rand(12, 2, generator=generator) * torch.tensor([7.0, 8.0]) - 1.5  # y, x in [-1.5, H+.5]
    cases += [Case("random", (feature, y, x), "seed 1") for y, x in points.tolist()]
    return cases


def _align_reference(feature: Tensor, box: Tensor, output_size: int, spatial_scale: float,
                     sampling_ratio: int, aligned: bool) -> Tensor:
    rois = torch.cat([box.new_zeros(1), box])[None]  # [1, 5]: image 0
    return roi_ops.roi_align(feature[None], rois, output_size, spatial_scale, sampling_ratio, aligned)[0]


def _pool_reference(feature: Tensor, box: Tensor, output_size: int, spatial_scale: float) -> Tensor:
    rois = torch.cat([box.new_zeros(1), box])[None]
    return roi_ops.roi_pool(feature[None], rois, output_size, spatial_scale)[0]


def _random_box(generator: torch.Generator, low: float, high: float) -> Tensor:
    corners = torch.rand(2, 2, generator=generator) * (high - low) + low  # two (x, y) corners
    return torch.cat([corners.min(dim=0).values, corners.max(dim=0).values])


def _align_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(2)
    feature = torch.randn(2, 16, 16, generator=generator)
    section_2 = torch.tensor([21.4, 10.6, 81.2, 55.4])
    cases = [Case("by hand", (_tiny(), torch.tensor([1.0, 0.0, 2.0, 1.0]), 1, 1.0, 1, False)),
             Case("by hand", (_tiny(), torch.tensor([0.75, 0.0, 1.75, 1.0]), 1, 1.0, 1, False)),
             Case("section 2's box", (feature, section_2, 4, 1 / 8, 2, False)),
             Case("section 2's box", (feature, section_2, 4, 1 / 8, 2, True))]
    for aligned in (False, True):
        small, past, degenerate = [3.2, 4.1, 3.6, 4.5], [-3.0, 10.5, 9.0, 18.2], [5.0, 5.0, 5.0, 9.0]
        cases += [Case("box smaller than a cell", (feature, torch.tensor(small), 2, 1.0, 2, aligned)),
                  Case("box past the map's edge", (feature, torch.tensor(past), 3, 1.0, 2, aligned)),
                  Case("degenerate box", (feature, torch.tensor(degenerate), 2, 1.0, 1, aligned))]
    for seed in range(4):
        box = _random_box(torch.Generator().manual_seed(seed), -8.0, 136.0)
        args = (feature, box, 2 + seed, 1 / 8, 1 + seed % 3, seed % 2 == 1)
        cases.append(Case("random", args, f"seed {seed}"))
    return cases


def _pool_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(3)
    feature = torch.randn(2, 12, 14, generator=generator)
    cases = [Case("by hand", (_tiny(), torch.tensor([0.0, 0.0, 3.0, 2.0]), 2, 1.0)),
             Case("edges on a half cell", (_tiny(), torch.tensor([0.5, 0.5, 2.5, 2.5]), 2, 1.0)),
             Case("edges on a half cell", (feature, torch.tensor([20.0, 12.0, 68.0, 60.0]), 3, 1 / 8)),
             Case("box smaller than a cell", (feature, torch.tensor([3.2, 4.1, 3.4, 4.3]), 2, 1.0)),
             Case("box past the map's edge", (feature, torch.tensor([-5.0, 8.0, 6.0, 17.0]), 3, 1.0)),
             Case("box wholly outside the map", (feature, torch.tensor([20.0, 20.0, 30.0, 26.0]), 2, 1.0))]
    for seed in range(4):
        box = _random_box(torch.Generator().manual_seed(10 + seed), -16.0, 128.0)
        cases.append(Case("random", (feature, box, 2 + seed, 1 / 8), f"seed {10 + seed}"))
    return cases


EXERCISES = [BILINEAR_SAMPLE, ROI_ALIGN_BOX, ROI_POOL_BOX]
CHECKS = {
    "bilinear_sample": Checker(BILINEAR_SAMPLE, reference.bilinear, _bilinear_cases),
    "roi_align_box": Checker(ROI_ALIGN_BOX, _align_reference, _align_cases, tensors(atol=1e-4)),
    "roi_pool_box": Checker(ROI_POOL_BOX, _pool_reference, _pool_cases, tensors(atol=1e-6)),
}
