"""The widget shell every explorer uses: a plain *view* function wrapped by ipywidgets, and the
static picture that stands in for a widget where no kernel runs.

Each widget is a thin ipywidgets shell around a plain *view* function of its controls' values,
so tests (and chapters) call the function without a browser, or drive the widget by setting a
control's ``.value``, as a reader's mouse would (the pattern of ipywidgets' own tests).

* ``RoIExplorer`` (chapter 01): move and resize a box on a small feature map and watch RoIPool's
  quantized bins and RoIAlign's sampling points side by side, with both outputs
  (view function :func:`roi_explorer_view`, drawing :func:`draw_roi_view`).
* ``DetectionStepper`` (chapter 00): walk through detection on one image, stage by stage, from
  the input to the final detections, and follow one detection back to its anchor
  (view function :func:`stepper_view`, lineage ``Trace.lineage``, images
  :func:`default_images`, the stages' own drawings in ``stepper_stages``).

Layout. Both fit a 1000-pixel-wide notebook column (JupyterLab with its side panel open): the
controls are stacked in rows of explicit pixel widths (each row at most ``COLUMN_WIDTH_PX``, and
allowed to wrap), description widths are fixed so that slider values stay visible, and the picture
is a PNG in an ``ipywidgets.Image`` no wider than ``COLUMN_WIDTH_PX``.

Static pictures (where no kernel runs). Displaying a widget puts **two outputs** in the cell
(``_ipython_display_``):

1. the live widget: ``application/vnd.jupyter.widget-view+json``, and as ``text/plain`` a line
   saying that the picture below is the widget's first view;
2. a *static picture*: ``text/html`` with the current view's PNG inline (and the caption) in a
   ``<div class="maskrcnn-edu-static">``, and a ``<style>`` rule that hides that div whenever the
   output just before it shows a picture
   (``.jp-OutputArea-child:has(img) + .jp-OutputArea-child .maskrcnn-edu-static {display: none}``).

What each front end shows (checked in headless Chromium with nbconvert 7.17 and JupyterLab 4.6;
``tests/test_browser.py`` checks the first and the third):

* **Live JupyterLab**: output 1 renders the widget, whose ``<img>`` is the picture, so the CSS rule
  hides output 2: one picture, no duplicate. Likewise for a trusted notebook whose stored widget
  state JupyterLab restores.
* **A stored notebook opened in JupyterLab without running it** (untrusted): JupyterLab renders
  only "safe" mime types of untrusted outputs, and the widget view is not one, so output 1 shows
  its one line of text; output 2 is sanitized (its ``<style>`` goes, its image stays): the picture.
* **nbconvert ``--to html``**: nbconvert picks the widget view only if the notebook holds the
  widget state (``jupyter nbconvert --execute`` stores it by default). Then the view is an empty
  ``<div>`` that a script from a CDN fills in, blank offline: output 2's picture shows (and hides
  itself when the CDN script does render the widget). Without stored state, output 1 is its line of
  text and output 2 the picture.

A single bundle (widget view + ``image/png``) is not enough: nbconvert's HTML exporter never looks
past the widget view when the state is stored, so the chapter would be blank in offline HTML.
(``_repr_mimebundle_`` still returns that single bundle, for code that asks for one.)
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Callable, Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure

__all__ = ["COLUMN_WIDTH_PX", "DPI", "figure_png", "static_picture_html", "ShowsStaticPicture", "View",
           "Explorer"]

COLUMN_WIDTH_PX = 960  # the widest a widget may be: a 1000-pixel notebook column minus its margins
DPI = 80  # figures are rendered at 80 pixels per inch: a 12-inch figure is 960 pixels wide


def figure_png(figure: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes (it is not shown by pyplot, and nothing is kept open)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Static pictures: what a notebook shows where no kernel runs (see the module docstring)
# ---------------------------------------------------------------------------------------------

STATIC_CLASS = "maskrcnn-edu-static"
STATIC_NOTE = "[An interactive widget: run the notebook to use it. Below, its first view.]"
# Hide the static picture when the output right before it (the widget) shows a picture itself.
# JupyterLab and nbconvert's "lab" template use .jp-OutputArea-child; the classic notebook .output_area.
_HIDE_WHEN_WIDGET_SHOWS = (
    f"<style>.jp-OutputArea-child:has(img) + .jp-OutputArea-child .{STATIC_CLASS},"
    f" .output_area:has(img) + .output_area .{STATIC_CLASS} {{display: none;}}</style>"
)


def static_picture_html(png: bytes, caption: str = "") -> str:
    """The static stand-in for a widget: ``png`` inline, the caption under it, and the CSS rule that
    hides both wherever the widget itself renders."""
    data = base64.b64encode(png).decode("ascii")
    text = html.escape(caption)
    return (
        f'{_HIDE_WHEN_WIDGET_SHOWS}<div class="{STATIC_CLASS}">'
        f'<img src="data:image/png;base64,{data}" alt="{text or "the widget as first shown"}"'
        ' style="max-width:100%">'
        f'<p style="font-size:13px; margin:4px 0">{text}</p></div>'
    )


class ShowsStaticPicture:
    """Mixin for a widget shell with ``widget`` (the ipywidget) and ``_picture()`` ->
    ``(png bytes or None, caption)``: displays the live widget plus a static picture of its current
    view that shows only where the widget cannot (see the module docstring). Other widget shells
    (e.g. ``explorers.Explorer``) can use it as is."""

    widget: widgets.Widget

    def _picture(self) -> tuple[bytes | None, str]:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        png, caption = self._picture()
        if png:
            bundle["image/png"] = base64.b64encode(png).decode("ascii")
        if caption:
            bundle["text/plain"] = caption
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        png, caption = self._picture()
        if not png:
            display(self._repr_mimebundle_(), raw=True)
            return
        live = self.widget._repr_mimebundle_()
        live["text/plain"] = STATIC_NOTE  # shown only where the widget cannot be, above its picture
        display(live, raw=True)
        static = {"text/html": static_picture_html(png, caption), "text/plain": caption or "(picture)"}
        display(static, raw=True)


def described(control, width_px: int, description_px: int):
    """Give a control an explicit width and a fixed description width (so a slider's value shows)."""
    control.layout = widgets.Layout(width=f"{width_px}px")
    control.style.description_width = f"{description_px}px"
    return control


def picture_widget(width_px: int) -> widgets.Image:
    """The widget's picture: ``width_px`` wide, narrower in a narrower column (no margin, so that
    it never sticks out of the column by a few pixels and makes it scroll)."""
    layout = widgets.Layout(width=f"{width_px}px", max_width="100%", margin="0")
    return widgets.Image(format="png", layout=layout)


def row(children: Sequence[widgets.Widget]) -> widgets.HBox:
    """Controls side by side; they wrap onto a new line in a column narrower than they are."""
    return widgets.HBox(list(children), layout=widgets.Layout(width=f"{COLUMN_WIDTH_PX}px", max_width="100%",
                                                              flex_flow="row wrap"))


# The widest picture that fits a 1000-pixel notebook column with JupyterLab's margins.
MAX_WIDTH_PX = COLUMN_WIDTH_PX


@dataclass
class View:
    """What an explorer shows: a figure and a caption (plain text, one or two sentences)."""

    figure: Figure
    caption: str = ""


class Explorer(ShowsStaticPicture):
    """Controls above a picture and a caption, redrawn by ``view(**values)`` on every change.

    Args:
        controls: name -> ipywidgets control; the names are ``view``'s keyword arguments.
        view: ``(**values) -> View``.
        draw: ``False`` computes ``state`` without rendering (tests that only read numbers).

    ``state`` is the latest ``View``; ``values()`` the controls' values. Display an explorer as the
    last expression of a cell. Where no widget front end runs (nbconvert HTML offline, GitHub, a
    stored notebook not yet run), a static picture of the current view shows instead: the same
    mechanism as the stepper's (see this module's docstring).
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
