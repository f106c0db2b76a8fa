"""The chapters' interactive explorers: each is a plain *view* function of its controls' values,
wrapped by one small ipywidgets shell, ``Explorer``.

A view function takes the controls' values as keyword arguments and returns a ``View``: the figure
to show and a one-line caption with the numbers that matter. Tests (and chapters) call the view
function directly, or drive an ``Explorer`` by setting its controls' ``.value``, as a reader's
mouse would; nothing here needs a browser.

One module per chapter topic: ``anchors`` (02), ``rpn`` (03), ``heads`` (04), ``losses`` (05),
``training`` (06), ``evaluation`` (07), ``ablations`` (08). The detection stepper (00) and the
RoI explorer (01) live in ``maskrcnn_edu.widgets``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..widgets import COLUMN_WIDTH_PX, ShowsStaticPicture

__all__ = ["View", "Explorer", "figure_png"]

# The widest picture that fits a 1000-pixel notebook column with JupyterLab's margins.
MAX_WIDTH_PX = COLUMN_WIDTH_PX


@dataclass
class View:
    """What an explorer shows: a figure and a caption (plain text, one or two sentences)."""

    figure: Figure
    caption: str = ""


def figure_png(figure: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (it is not shown by pyplot, and nothing is kept open)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class Explorer(ShowsStaticPicture):
    """Controls above a picture and a caption, redrawn by ``view(**values)`` on every change.

    Args:
        controls: name -> ipywidgets control; the names are ``view``'s keyword arguments.
        view: ``(**values) -> View``.
        draw: ``False`` computes ``state`` without rendering (tests that only read numbers).

    ``state`` is the latest ``View``; ``values()`` the controls' values. Display an explorer as the
    last expression of a cell. Where no widget front end runs (nbconvert HTML offline, GitHub, a
    stored notebook not yet run), a static picture of the current view shows instead: the same
    mechanism as ``maskrcnn_edu.widgets`` (see its module docstring).
    """

    def __init__(self, controls: dict[str, widgets.Widget], view: Callable[..., View], draw: bool = True):
        self.controls = controls
        self.view = view
        self.draw = draw
        for control in controls.values():
            if hasattr(control, "style") and hasattr(control.style, "description_width"):
                control.style.description_width = "initial"  # the whole label, never cut
            control.layout.max_width = f"{MAX_WIDTH_PX}px"
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width=f"{MAX_WIDTH_PX}px"))
        self.caption = widgets.HTML()
        self.widget = widgets.VBox(
            [widgets.VBox(list(controls.values())), self.caption, self.image],
            layout=widgets.Layout(max_width=f"{MAX_WIDTH_PX}px"),
        )
        self.state: View | None = None
        for control in controls.values():
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def update(self) -> View:
        """Recompute the view from the controls (and redraw it); return it."""
        self.state = self.view(**self.values())
        self.caption.value = f"<p style='font-size:13px; margin:4px 0'>{self.state.caption}</p>"
        if self.draw:
            self.image.value = figure_png(self.state.figure)
        return self.state

    def _picture(self) -> tuple[bytes | None, str]:
        png = self.image.value if self.draw and self.image.value else None
        return png, self.state.caption if self.state else ""
