"""Captions that neither hide each other nor the objects they name.

A caption's place can only be chosen once the figure's size and the axes' limits are known, which
is when the figure is drawn: a chapter may widen the view or a layout engine resize the axes after
the boxes are drawn. So each axes gets one :class:`CaptionPlacer`, an invisible artist drawn before
everything else on the axes; each time the figure is drawn it moves every caption to the first of
a few spots beside its box (above, below, inside at the top, inside at the bottom; left-aligned,
then right-aligned) that overlaps no
caption placed before it, stays inside the axes and covers no box, or else to the spot that does
least of these.
"""
from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.text import Text

__all__ = ["CaptionPlacer", "caption_placer"]

# What a spot costs, per pixel it covers: another caption or beyond the axes (the caption is cut or
# hidden) weigh much more than a box (some object shows through a caption's 25% transparency).
HIDDEN_CAPTION_COST, OUTSIDE_COST, COVERED_BOX_COST = 10.0, 10.0, 1.0


class CaptionPlacer(Artist):
    """Places the captions of one axes each time the axes is drawn (see the module's docstring)."""

    def __init__(self):
        super().__init__()
        self.set_zorder(-1e9)  # the axes draws its children by zorder: this runs before the captions
        self.set_in_layout(False)  # it draws nothing, so it takes no room in a tight layout
        self.captions: list[tuple[Text, tuple[float, float, float, float], list]] = []

    def add(self, text: Text, box, above: bool) -> None:
        """Place ``text`` beside ``box`` (x0, y0, x1, y1 in data coordinates), first choice above
        the box with ``above``, else inside its top-left corner."""
        x0, y0, x1, y1 = (float(v) for v in box)
        outside = [(y0, "bottom"), (y1, "top")]  # above, below (the image's y points down)
        inside = [(y0, "top"), (y1, "bottom")]  # inside at the top, at the bottom
        heights = outside + inside if above else inside + outside
        spots = [(x, y, va, ha) for x, ha in ((x0, "left"), (x1, "right")) for y, va in heights]
        self.captions.append((text, (x0, y0, x1, y1), spots))

    def draw(self, renderer) -> None:
        if not self.captions:
            return
        to_pixels = self.axes.transData
        boxes = np.array([box for _, box, _ in self.captions], dtype=float).reshape(-1, 4)
        corners = np.concatenate([to_pixels.transform(boxes[:, :2]), to_pixels.transform(boxes[:, 2:])], 1)
        box_pixels = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]),
                                     np.maximum(corners[:, :2], corners[:, 2:])], 1)  # [N, 4]
        frame = self.axes.bbox
        placed = np.zeros((0, 4))
        for text, _, spots in self.captions:
            costs, extents = [], []
            for x, y, va, ha in spots:
                text.set_position((x, y))
                text.set_va(va)
                text.set_ha(ha)
                extent = text.get_window_extent(renderer).padded(2)
                extent = np.array([extent.x0, extent.y0, extent.x1, extent.y1])
                area = (extent[2] - extent[0]) * (extent[3] - extent[1])
                inside_frame = _overlap(extent, np.array([[frame.x0, frame.y0, frame.x1, frame.y1]])).sum()
                costs.append(HIDDEN_CAPTION_COST * _overlap(extent, placed).sum()
                             + OUTSIDE_COST * (area - inside_frame)
                             + COVERED_BOX_COST * _overlap(extent, box_pixels).sum())
                extents.append(extent)
                if costs[-1] == 0:
                    break
            best = int(np.argmin(costs))  # the first of the cheapest spots
            x, y, va, ha = spots[best]
            text.set_position((x, y))
            text.set_va(va)
            text.set_ha(ha)
            placed = np.concatenate([placed, extents[best][None]])


def _overlap(extent: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Area shared by ``extent [4]`` and each of ``others [K, 4]`` (x0, y0, x1, y1, pixels): ``[K]``."""
    width = np.minimum(extent[2], others[:, 2]) - np.maximum(extent[0], others[:, 0])
    height = np.minimum(extent[3], others[:, 3]) - np.maximum(extent[1], others[:, 1])
    return np.clip(width, 0, None) * np.clip(height, 0, None)


def caption_placer(ax: Axes) -> CaptionPlacer:
    """The axes' placer, added the first time a caption is drawn on it."""
    for artist in ax.artists:
        if isinstance(artist, CaptionPlacer):
            return artist
    return ax.add_artist(CaptionPlacer())
