"""Chapter 00's detection stepper: walk through detection on one image, stage by stage, from the
input to the final detections, and follow one detection back to its anchor (view function
:func:`stepper_view`; the lineage is ``Trace.lineage``; images :func:`.images.default_images`).

Each stage is drawn on the image by the same axes-level drawer as the chapter's figure of that
stage (``visualize.stages`` and ``visualize.head_stages``: ``draw_X_on``); what is the stepper's
own (the side panels, the followed detection in magenta, the captions) lives in
:mod:`.stepper_stages`, one function per stage.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure
from torch import Tensor

from ..visualize.primitives import class_name, show_image
from ..visualize.stages import need_inference
from .images import default_images
from .shell import COLUMN_WIDTH_PX, DPI, ShowsStaticPicture, described, figure_png, picture_widget, row
from .stepper_stages import STAGE_DRAWINGS, Scene, lineage_sentence, shown_detections

__all__ = ["STAGES", "StepperView", "stepper_view", "DetectionStepper"]

STAGES = tuple(STAGE_DRAWINGS)  # "input", "anchors", ... "final detections"


@dataclass
class StepperView:
    """What the stepper shows: ``figure`` (the stage drawn on the image, left, and a side panel),
    ``caption`` (one or two sentences with the stage's numbers), ``counts`` (those numbers by name),
    ``highlighted`` (role -> box ``(x0, y0, x1, y1)`` drawn in magenta for the followed detection;
    each is a ``Rectangle`` patch whose ``gid`` is ``"selected <role>"``) and ``shown_detections``
    (indices of the detections that pass the score threshold)."""

    figure: Figure | None
    caption: str
    stage: str
    counts: dict = field(default_factory=dict)
    highlighted: dict = field(default_factory=dict)
    shown_detections: list = field(default_factory=list)


STEPPER_FIGURE_SIZE = (11.0, 5.2)  # inches: 880 x 416 pixels at DPI


def stepper_view(trace, stage: str, score_threshold: float = 0.5, detection: int | None = None,
                 config=None, class_names: Sequence[str] | None = None) -> StepperView:
    """The detection stepper's view of a one-image inference ``trace`` (``model.trace(image)``).

    ``stage``: one of :data:`STAGES`. ``score_threshold``: the least class score of the boxes drawn
    from the box head on (class scores, per-class NMS, masks, final detections). ``detection``:
    ``None``, or an index into ``trace.detections[0]`` to follow back to its anchor
    (``trace.lineage(detection)``, drawn in magenta at every stage). ``config``: the model's
    ``Config``, for the thresholds the captions quote and the class names (``class_names``
    overrides those).

    Returns a :class:`StepperView`: the figure (the image with the stage's boxes, and a side panel),
    a caption with the stage's counts, and those counts. Raises ``ValueError`` naming the argument
    for an unknown stage, a threshold outside 0..1, or a detection index out of range.
    """
    if stage not in STAGE_DRAWINGS:
        raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError(f"score_threshold must be in 0..1, got {score_threshold!r}")
    if len(trace.batch.image_sizes) != 1:
        raise ValueError(f"trace must hold one image, it holds {len(trace.batch.image_sizes)}")
    need_inference(trace, "the detection stepper")
    lineage = None if detection is None else trace.lineage(detection)
    if class_names is None:
        class_names = tuple(getattr(config, "class_names", None) or ())
    figure = Figure(figsize=STEPPER_FIGURE_SIZE, layout="constrained")
    main, side = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    scene = Scene(trace, float(score_threshold), lineage, class_names, config, main, side)
    if stage != "final detections":  # that stage draws the image at its original size itself
        show_image(main, trace.image(0))
    caption = STAGE_DRAWINGS[stage](scene)
    if lineage is not None:
        caption += lineage_sentence(scene)
    figure.suptitle(f"{STAGES.index(stage) + 1}/{len(STAGES)}: {stage}", fontsize=12)
    shown = [int(d) for d in shown_detections(trace, score_threshold)]
    return StepperView(figure, caption, stage, scene.counts, scene.highlighted, shown)


# The widget ------------------------------------------------------------------------------------


def _checked_images(images) -> dict[str, Tensor]:
    if isinstance(images, Mapping):
        named = {str(name): image for name, image in images.items()}
    elif isinstance(images, (list, tuple)):
        named = {f"image {i}": image for i, image in enumerate(images)}
    else:
        raise ValueError("images must be a dict name -> [3, H, W] tensor or a list of them, "
                         f"got {type(images).__name__}")
    if not named:
        raise ValueError("images is empty: give the stepper at least one [3, H, W] image")
    for name, image in named.items():
        is_image = isinstance(image, Tensor) and image.dim() == 3 and image.shape[0] == 3
        if not is_image or not image.is_floating_point():
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"images[{name!r}] must be a float [3, H, W] tensor in 0..1, got {shape}")
    return named


def _controls(names: Sequence[str], stage: str, score_threshold: float) -> dict:
    """The stepper's four controls, each with an explicit width (the column is 960 pixels)."""
    return {
        "image": described(widgets.Dropdown(options=list(names), description="image"), 440, 70),
        "score_threshold": described(
            widgets.FloatSlider(value=score_threshold, min=0.0, max=1.0, step=0.05, description="min score",
                                continuous_update=False, readout_format=".2f"), 440, 80),
        "stage": described(widgets.Dropdown(options=list(STAGES), value=stage, description="stage"), 330, 50),
        "detection": described(widgets.Dropdown(options=[("none", None)], index=0, description="follow"),
                               360, 60),
    }


class DetectionStepper(ShowsStaticPicture):
    """Walk through detection on one image, stage by stage, and follow one detection back.

    ``DetectionStepper(model, images=None)``: ``images`` a dict name -> ``[3, H, W]`` float tensor
    in 0..1, or a list (default :func:`.images.default_images`). Controls (``controls``):

    * ``image``: which image (its trace is computed once, on first use, and cached in ``traces``);
    * ``stage``: one of :data:`STAGES`, also moved by the ``previous`` / ``next`` buttons;
    * ``score_threshold``: the least class score shown from the box head on;
    * ``detection``: ``None`` or a detection (those scoring at least the threshold) to follow, in
      magenta, back through its mask, refinement, proposal and anchor.

    Every change recomputes ``state`` (a :class:`StepperView` from :func:`stepper_view`) and, with
    ``draw=True``, the picture. The model is only traced (``model.trace``): it is left unchanged.
    Display the stepper as the last expression of a cell.
    """

    def __init__(self, model, images=None, stage: str = "input", score_threshold: float = 0.5,
                 draw: bool = True):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise ValueError(f"score_threshold must be in 0..1, got {score_threshold!r}")
        self.model = model
        self.images = _checked_images(default_images() if images is None else images)
        self.traces: dict = {}
        self.draw = draw
        self._refreshing = False
        self.controls = _controls(list(self.images), stage, score_threshold)
        button = widgets.Layout(width="100px")
        self.previous = widgets.Button(description="◀ previous", layout=button, tooltip="the stage before")
        self.next = widgets.Button(description="next ▶", layout=button, tooltip="the stage after")
        self.previous.on_click(lambda _button: self.step(-1))
        self.next.on_click(lambda _button: self.step(+1))
        self.caption = widgets.HTML(layout=widgets.Layout(width=f"{COLUMN_WIDTH_PX - 20}px", max_width="100%",
                                                          margin="0"))
        self.image = picture_widget(int(STEPPER_FIGURE_SIZE[0] * DPI))
        self.widget = widgets.VBox(
            [row([self.controls["image"], self.controls["score_threshold"]]),
             row([self.previous, self.controls["stage"], self.next, self.controls["detection"]]),
             self.caption, self.image],
            layout=widgets.Layout(width=f"{COLUMN_WIDTH_PX}px", max_width="100%"),
        )
        self.state: StepperView | None = None
        for name in ("image", "score_threshold"):
            self.controls[name].observe(self._on_selection_change, names="value")
        for name in ("stage", "detection"):
            self.controls[name].observe(self._on_change, names="value")
        self._refresh_detections()
        self.update()

    # The trace of each image, computed once.
    def trace(self, name: str | None = None):
        """The inference trace of image ``name`` (default: the chosen one), computed on first use."""
        name = self.controls["image"].value if name is None else name
        if name not in self.traces:
            image = self.images[name]
            device = next(self.model.parameters()).device
            self.traces[name] = self.model.trace(image.to(device))
        return self.traces[name]

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def step(self, offset: int) -> None:
        """Move the stage by ``offset`` (the previous / next buttons), staying within the stages."""
        index = STAGES.index(self.controls["stage"].value) + offset
        self.controls["stage"].value = STAGES[min(max(index, 0), len(STAGES) - 1)]

    def update(self) -> StepperView:
        """Recompute the view from the controls (and redraw it); return it."""
        values = self.values()
        config = getattr(self.model, "config", None)
        self.state = stepper_view(self.trace(values["image"]), values["stage"], values["score_threshold"],
                                  values["detection"], config=config)
        style = "font-size:13px; margin:4px 0; line-height:1.4"
        self.caption.value = f"<p style='{style}'>{html.escape(self.state.caption)}</p>"
        if self.draw:
            self.image.value = figure_png(self.state.figure)
        index = STAGES.index(values["stage"])
        self.previous.disabled, self.next.disabled = index == 0, index == len(STAGES) - 1
        return self.state

    def _refresh_detections(self) -> None:
        """The follow menu lists the chosen image's detections that pass the threshold; the followed
        detection stays chosen while it passes."""
        trace = self.trace()
        found = trace.heads.detections[0]
        names = tuple(getattr(getattr(self.model, "config", None), "class_names", None) or ())
        options = [("none", None)]
        for d in shown_detections(trace, self.controls["score_threshold"].value).tolist():
            name = class_name(found["labels"][d], names)
            options.append((f"{d}: {name} {float(found['scores'][d]):.2f}", d))
        menu = self.controls["detection"]
        values = [value for _, value in options]
        self._refreshing = True
        try:
            chosen = values.index(menu.value) if menu.value in values else 0
            menu.options = options
            menu.index = chosen  # by index: a value of None would show an empty menu, not "none"
        finally:
            self._refreshing = False

    def _on_selection_change(self, change) -> None:
        self._refresh_detections()
        self.update()

    def _on_change(self, change) -> None:
        if not self._refreshing:
            self.update()

    def _picture(self) -> tuple[bytes | None, str]:
        png = bytes(self.image.value) if self.draw and self.image.value else None
        return png, self.state.caption
