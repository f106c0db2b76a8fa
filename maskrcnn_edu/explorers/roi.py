"""Chapter 01's RoI explorer: move and resize a box on a small feature map and watch RoIPool's
quantized bins and RoIAlign's sampling points side by side, with both outputs (view function
:func:`roi_explorer_view`, drawing :func:`draw_roi_view`)."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from .. import roi_ops
from ..visualize import draw_box, draw_feature_map, draw_roi_pool_bins, draw_sampling_points, roi_align_box
from .shell import COLUMN_WIDTH_PX, DPI, ShowsStaticPicture, described, figure_png, picture_widget, row

__all__ = ["explorer_feature_map", "RoIView", "roi_explorer_view", "draw_roi_view", "RoIExplorer"]


def explorer_feature_map(size: int = 16, seed: int = 0) -> Tensor:
    """A smooth, deterministic one-channel feature map ``[size, size]`` with values in about 0..1.

    Seeded noise on a coarse 4 x 4 grid, bilinearly enlarged: smooth enough that RoIAlign's
    interpolation looks like a resampling, uneven enough that RoIPool's max has clear winners.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, 4, 4, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)[0, 0]


@dataclass(frozen=True)
class RoIView:
    """Everything the explorer shows for one box. Coordinates in feature cells (spatial_scale 1).

    ``box``: ``(x0, y0, x1, y1)``. ``pool_rows [P, 2]`` and ``pool_cols [P, 2]``: RoIPool's bins as
    half-open cell ranges. ``points_y [P, gy]`` and ``points_x [P, gx]``: RoIAlign's sampling points.
    ``pool_output`` and ``align_output``: ``[P, P]``, the two ops on ``feature_map [H, W]``.
    """

    box: tuple[float, float, float, float]
    output_size: int
    sampling_ratio: int
    aligned: bool
    feature_map: Tensor
    pool_rows: Tensor
    pool_cols: Tensor
    points_y: Tensor
    points_x: Tensor
    pool_output: Tensor
    align_output: Tensor

    @property
    def num_sampling_points(self) -> int:
        """All of RoIAlign's points: ``P * gy * P * gx``."""
        return self.points_y.numel() * self.points_x.numel()


def roi_explorer_view(
    x: float,
    y: float,
    w: float,
    h: float,
    output_size: int = 3,
    sampling_ratio: int = 2,
    aligned: bool = False,
    feature_map: Tensor | None = None,
) -> RoIView:
    """RoIPool and RoIAlign for the box ``(x, y, x + w, y + h)`` on ``feature_map [H, W]``.

    The box is in feature cells (``spatial_scale = 1``), ``(x, y)`` its top-left corner.
    ``sampling_ratio <= 0`` lets RoIAlign choose ``ceil(bin size)`` points per axis, as
    ``roi_align`` does. Raises ``ValueError`` naming the argument when ``w`` or ``h`` is not
    positive or ``output_size`` is not a positive int. ``feature_map`` defaults to
    :func:`explorer_feature_map`.
    """
    for name, side, value in (("w", "width", w), ("h", "height", h)):
        if not value > 0:
            raise ValueError(f"{name} (box {side}) must be > 0, got {value!r}")
    if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1:
        raise ValueError(f"output_size must be a positive int, got {output_size!r}")
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
        raise ValueError(f"sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")
    if feature_map is None:
        feature_map = explorer_feature_map()
    if feature_map.dim() != 2:
        raise ValueError(f"feature_map must be [H, W], got shape {tuple(feature_map.shape)}")
    box = (float(x), float(y), float(x + w), float(y + h))
    features = feature_map[None, None]  # [1, 1, H, W]
    rois = torch.tensor([[0.0, *box]], dtype=feature_map.dtype)
    pool_output = roi_ops.roi_pool(features, rois, output_size)[0, 0]
    align = dict(sampling_ratio=sampling_ratio, aligned=aligned)
    align_output = roi_ops.roi_align(features, rois, output_size, **align)[0, 0]
    pool_rows, pool_cols = roi_ops.roi_pool_bins(box, output_size)
    points_y, points_x = roi_ops.roi_align_sampling_points(box, output_size, **align)
    return RoIView(box, output_size, sampling_ratio, bool(aligned), feature_map, pool_rows, pool_cols,
                   points_y, points_x, pool_output, align_output)


ROI_FIGURE_SIZE = (9.0, 8.4)  # inches: 720 x 672 pixels at DPI


def draw_roi_view(view: RoIView, figure: Figure | None = None) -> Figure:
    """Draw a ``RoIView``: the two ops on the feature map (top) and their outputs (bottom).

    Uses a pyplot-free ``Figure`` unless one is given, so redrawing leaks no open figures.
    """
    figure = figure or Figure(figsize=ROI_FIGURE_SIZE, layout="constrained")
    (pool_ax, align_ax), (pool_out_ax, align_out_ax) = figure.subplots(
        2, 2, gridspec_kw={"height_ratios": [1.25, 1]}
    )
    low, high = view.feature_map.min().item(), view.feature_map.max().item()
    colours = {"cmap": "gray", "vmin": low - 0.6 * (high - low), "vmax": high}  # light: bright = high

    draw_feature_map(pool_ax, view.feature_map, title="RoIPool: quantized bins (max)", **colours)
    draw_roi_pool_bins(pool_ax, view.pool_rows, view.pool_cols)
    draw_box(pool_ax, view.box, color="black", label="box")
    pool_ax.legend(loc="lower right", fontsize=8)

    aligned = ", aligned" if view.aligned else ""
    draw_feature_map(align_ax, view.feature_map, title=f"RoIAlign{aligned}: bins and sampling points",
                     **colours)
    draw_box(align_ax, roi_align_box(view.box, aligned=view.aligned), bins=(view.output_size,) * 2,
             color="black", label="box as sampled")
    draw_sampling_points(align_ax, view.points_y, view.points_x)
    align_ax.legend(loc="lower right", fontsize=8)

    outputs = ((pool_out_ax, view.pool_output, "RoIPool"), (align_out_ax, view.align_output, "RoIAlign"))
    for ax, output, name in outputs:
        draw_feature_map(ax, output, title=f"{name} output {view.output_size}x{view.output_size}", **colours)
        ax.set_xlabel("output column")
        ax.set_ylabel("output row")
    return figure


class RoIExplorer(ShowsStaticPicture):
    """Sliders for a box (in feature cells) that redraw RoIPool's bins and RoIAlign's points.

    ``controls``: ``x, y, w, h`` (float sliders, feature cells; the sliders clamp values to their
    range, as ipywidgets sliders do), ``output_size`` (1..7), ``sampling_ratio`` (0..4, 0 = adaptive)
    and ``aligned`` (checkbox). Each change recomputes ``state`` (a :class:`RoIView`, from
    :func:`roi_explorer_view`) and, with ``draw=True``, the picture in ``image``.
    Display the explorer as the last expression of a cell: two columns of controls above the
    picture, 960 pixels wide at most.
    """

    CONTROL_PX, DESCRIPTION_PX = 460, 90

    def __init__(self, feature_map: Tensor | None = None, draw: bool = True):
        self.feature_map = explorer_feature_map() if feature_map is None else feature_map
        height, width = self.feature_map.shape
        self.draw = draw

        def sized(control):
            return described(control, self.CONTROL_PX, self.DESCRIPTION_PX)

        def box_slider(description, value, low, high):
            return sized(widgets.FloatSlider(value=value, min=low, max=high, step=0.05,
                                             description=description, continuous_update=False,
                                             readout_format=".2f"))

        self.controls = {
            "x": box_slider("x (cells)", 2.7, -1.0, width - 1.0),
            "y": box_slider("y (cells)", 1.3, -1.0, height - 1.0),
            "w": box_slider("w (cells)", 7.9, 0.2, float(width)),
            "h": box_slider("h (cells)", 5.6, 0.2, float(height)),
            "output_size": sized(widgets.IntSlider(value=3, min=1, max=7, description="output size",
                                                   continuous_update=False)),
            "sampling_ratio": sized(widgets.IntSlider(value=2, min=0, max=4, description="samples/bin",
                                                      continuous_update=False)),
            "aligned": sized(widgets.Checkbox(value=False, description="aligned (shift -0.5 cell)")),
        }
        picture_px = int(ROI_FIGURE_SIZE[0] * DPI)
        self.image = picture_widget(picture_px)
        box_column = widgets.VBox([self.controls[name] for name in ("x", "y", "w", "h")])
        op_names = ("output_size", "sampling_ratio", "aligned")
        op_column = widgets.VBox([self.controls[name] for name in op_names])
        self.widget = widgets.VBox([row([box_column, op_column]), self.image],
                                   layout=widgets.Layout(width=f"{COLUMN_WIDTH_PX}px", max_width="100%"))
        self.state: RoIView | None = None
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.update()

    def values(self) -> dict:
        """The controls' current values, as keyword arguments of :func:`roi_explorer_view`."""
        return {name: control.value for name, control in self.controls.items()}

    def update(self) -> RoIView:
        """Recompute ``state`` from the controls (and redraw); return it."""
        self.state = roi_explorer_view(**self.values(), feature_map=self.feature_map)
        if self.draw:
            self.image.value = figure_png(draw_roi_view(self.state))
        return self.state

    def _on_change(self, change) -> None:
        self.update()

    def _picture(self) -> tuple[bytes | None, str]:
        png = bytes(self.image.value) if self.draw and self.image.value else None
        box = ", ".join(f"{v:.2f}" for v in self.state.box)
        size = self.state.output_size
        return png, f"RoIPool vs RoIAlign for the box ({box}), {size}x{size} output"
