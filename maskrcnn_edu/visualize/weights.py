"""Inside the network: activations of a traced image, weight statistics and histograms."""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from .primitives import _new_figure, to_numpy
from .stages import _check_image_index, _strides

__all__ = ["draw_activations", "weight_statistics", "format_weight_table", "draw_weight_table",
           "weight_layers", "draw_weight_histograms"]


def draw_activations(trace, which: str = "C", i: int = 0, channels: int = 8) -> Figure:
    """Activation grids: one row per level of the ResNet body (``which="C"``: C2..C5) or of the FPN
    (``"P"``: P2..P6), showing the ``channels`` channels with the highest mean activation, each
    on its own colour scale. Row titles give the level, its shape and stride."""
    _check_image_index(trace, i)
    if which not in ("C", "P"):
        raise ValueError(f'which must be "C" (ResNet stages) or "P" (FPN levels), got {which!r}')
    maps = trace.stages if which == "C" else trace.features
    strides = _strides(trace, maps)
    fig = _new_figure(10.0, 1.65 * len(maps) + 0.5)
    rows = fig.subfigures(len(maps), 1)
    for level, (row, values, (sy, sx)) in enumerate(zip(np.atleast_1d(rows), maps, strides)):
        activation = values[i]  # [C, H, W]
        means = activation.mean(dim=(1, 2))
        top = means.argsort(descending=True, stable=True)[:channels]
        axes = np.atleast_1d(row.subplots(1, channels))
        for ax, channel in zip(axes, top.tolist()):
            ax.imshow(to_numpy(activation[channel]), cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"ch {channel} (mean {float(means[channel]):.2g})", fontsize=8)
        for ax in axes[len(top):]:
            ax.set_visible(False)
        count, height, width = activation.shape
        row.suptitle(f"{which}{level + 2}: [{count}, {height}×{width}], stride {sx}: "
                     f"the {len(top)} channels with the highest mean activation", fontsize=9)
    what = "ResNet body, C2–C5" if which == "C" else "FPN, P2–P6"
    fig.suptitle(f"Activations of the {what} (each panel on its own colour scale)", fontsize=11)
    return fig


# Weights --------------------------------------------------------------------------------------------

DEAD_STD = 1e-8  # a tensor whose values all but equal one another has stopped carrying information
OVERFLOW_MAGNITUDE = 1e3  # weights this large in a trained network mean training diverged


def weight_statistics(model: torch.nn.Module) -> list[dict]:
    """One row per weight tensor of ``model``: its parameters and floating-point buffers
    (BatchNorm's running statistics), as the Keras inspect_weights notebook tabulates them.

    Each row: ``name``, ``shape`` (tuple), ``min``, ``max``, ``mean``, ``std`` (population std, as
    floats) and ``flags``, a list holding ``"dead"`` when the tensor is all zero or (with more
    than one element) its std is below 1e-8, and ``"overflow"`` when it holds a non-finite value
    or one of magnitude above 1e3.
    """
    buffers = [(name, b) for name, b in model.named_buffers() if b.is_floating_point()]
    named = list(model.named_parameters()) + buffers
    rows = []
    for name, tensor in named:
        values = tensor.detach().to("cpu", torch.float64).reshape(-1)
        if values.numel() == 0:
            rows.append(dict(name=name, shape=tuple(tensor.shape), min=float("nan"), max=float("nan"),
                             mean=float("nan"), std=float("nan"), flags=["empty"]))
            continue
        std = float(values.std(unbiased=False))
        flags = []
        if bool((values == 0).all()) or (values.numel() > 1 and std < DEAD_STD):
            flags.append("dead")
        if not bool(torch.isfinite(values).all()) or bool((values.abs() > OVERFLOW_MAGNITUDE).any()):
            flags.append("overflow")
        rows.append(dict(name=name, shape=tuple(tensor.shape), min=float(values.min()),
                         max=float(values.max()), mean=float(values.mean()), std=std, flags=flags))
    return rows


_TABLE_COLUMNS = ("name", "shape", "min", "max", "mean", "std", "flags")


def _table_cells(row: dict) -> list[str]:
    return [row["name"], "×".join(str(n) for n in row["shape"]) or "scalar",
            *(f"{row[key]:.4g}" for key in ("min", "max", "mean", "std")), ", ".join(row["flags"])]


def format_weight_table(rows: list[dict]) -> str:
    """The rows of :func:`weight_statistics` as a plain-text table, one tensor a line."""
    cells = [list(_TABLE_COLUMNS)] + [_table_cells(row) for row in rows]
    widths = [max(len(line[c]) for line in cells) for c in range(len(_TABLE_COLUMNS))]
    lines = []
    for k, line in enumerate(cells):
        text = "  ".join(cell.ljust(width) if c < 2 or c == 6 else cell.rjust(width)
                         for c, (cell, width) in enumerate(zip(line, widths)))
        lines.append(text.rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def draw_weight_table(rows: list[dict], max_rows: int | None = None) -> Figure:
    """The rows of :func:`weight_statistics` as a matplotlib table; flagged tensors in red.

    ``max_rows``: draw only the first ``max_rows`` rows (the title says how many there are);
    ``None`` draws all (a full ResNet-50 Mask R-CNN has about 400 -- filter the list first).
    """
    shown = rows if max_rows is None else rows[:max_rows]
    fig = _new_figure(10.0, 0.22 * (len(shown) + 1) + 0.7)
    ax = fig.subplots()
    ax.set_axis_off()
    flagged = sum(bool(row["flags"]) for row in rows)
    cells = [_table_cells(row) for row in shown] or [["(no weights)"] + [""] * (len(_TABLE_COLUMNS) - 1)]
    table = ax.table(cellText=cells, colLabels=list(_TABLE_COLUMNS), loc="upper center", cellLoc="right",
                     colWidths=[0.40, 0.14, 0.09, 0.09, 0.09, 0.09, 0.10])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (r, c), cell in table.get_celld().items():
        cell.set_height(1.0 / (len(cells) + 1))
        if c == 0 or c == 6:
            cell.get_text().set_horizontalalignment("left")
        if r == 0:
            cell.set_facecolor("0.85")
            cell.get_text().set_fontweight("bold")
        elif r - 1 < len(shown) and shown[r - 1]["flags"]:
            cell.set_facecolor("#f4b6b6")
    more = f", showing the first {len(shown)}" if len(shown) < len(rows) else ""
    ax.set_title(f"Weight statistics: {len(rows)} tensors{more}; {flagged} flagged (dead: std < "
                 f"{DEAD_STD:g} or all zero; overflow: non-finite or |w| > {OVERFLOW_MAGNITUDE:g})",
                 fontsize=9)
    return fig


def weight_layers(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(module name, weight)`` of every convolution (plain or transposed) and linear layer, in
    the model's order: the layers :func:`draw_weight_histograms` draws."""
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    return [(name, module.weight) for name, module in model.named_modules() if isinstance(module, kinds)]


def draw_weight_histograms(model: torch.nn.Module, max_layers: int | None = None, bins: int = 60) -> Figure:
    """A histogram of the *whole* weight tensor of every convolution and linear layer (the Keras
    notebook histogrammed only a slice), four to a row, each titled by the layer's name, shape
    and std. ``max_layers``: only the first that many layers."""
    layers = weight_layers(model)[:max_layers]
    cols = 4
    rows = max(-(-len(layers) // cols), 1)
    fig = _new_figure(10.0, 1.45 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, weight) in zip(axes, layers):
        values = weight.detach().to("cpu", torch.float64).reshape(-1).numpy()
        finite = values[np.isfinite(values)]
        counts, edges = (np.histogram(finite, bins=bins) if len(finite)
                         else (np.zeros(1), np.array([0.0, 1.0])))
        ax.stairs(counts, edges, fill=True, color="tab:blue")
        ax.set_title(f"{name}\n{'×'.join(str(n) for n in weight.shape)}, std {values.std():.3g}", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
        ax.xaxis.get_offset_text().set_fontsize(8)
        ax.set_yticks([])
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    fig.suptitle(f"Weight histograms of {len(layers)} convolution and linear layers (whole tensors)",
                 fontsize=11)
    return fig
