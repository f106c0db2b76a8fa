"""Matplotlib drawing for the book (never ipywidgets): every stage of detection, from one ``model.trace``.

Three layers, each built on the one before:

* **Primitives** draw on an ``ax`` they are given and return it: :func:`show_image`,
  :func:`draw_boxes` (the Keras notebooks' convention: anchors *dotted*, refined boxes *solid*,
  suppressed boxes *faint*), :func:`draw_captions`, :func:`draw_masks`; and chapter 01's feature
  map, box, RoIPool-bin and sampling-point drawings. Each name or colour is chosen in one place:
  :func:`class_colors` and :func:`class_name` (classes), :func:`score_colours` (scores),
  :data:`LEVEL_NAMES`, :func:`level_name` and :func:`level_colour` (FPN levels).
  :func:`describe` is the one-line tensor log.
* **Drawings from a** ``Trace`` (``model.trace(image)`` or ``model.trace(image, target)``) make
  their own ``Figure``: anchors of a cell, anchor labels, refinements, objectness, NMS, proposals
  (``stages``), RoI refinement, per-class NMS, mask logits and targets (``head_stages``),
  activations (``weights``). A stage that the detection stepper shows too has one axes-level
  drawer, ``draw_X_on(ax, trace, i)``, which the figure and the stepper both call; the two NMS
  drawings tell what NMS suppressed from what the top-k after it cut (:class:`NMSOutcome`).
* **Drawings from a model or a sample**: weight statistics and histograms, a sample's masks by
  class, ground truth vs prediction, an IoU grid, a precision-recall curve.

Figures are made with ``matplotlib.figure.Figure`` (not ``pyplot``), so pyplot keeps no reference
to them and a widget that redraws a thousand times leaks nothing; none of these functions calls
``plt.show()`` or closes a figure it did not open. Tensors or arrays are both accepted.

Image frame: pixel ``(i, j)`` is the unit square ``[j, j+1] x [i, i+1]`` (continuous pixel
coordinates, as every box in the package), so boxes land on the pixels they bound.

Drawing frame for feature maps (the one ``roi_ops`` reads values in): cell ``(i, j)`` is drawn as
the unit square **centred** on the point ``(x=j, y=i)``, i.e. ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]``,
because that point is where bilinear interpolation finds the cell's value. Axis ticks therefore
sit on cell centres. A box is drawn where an op reads it: ``box * spatial_scale`` for RoIPool and
for RoIAlign with ``aligned=False``; shifted by ``-0.5`` for RoIAlign with ``aligned=True``
(:func:`roi_align_box`). The y axis points down, as in an image.
"""
from .primitives import *  # noqa: F401,F403
from .stages import *  # noqa: F401,F403
from .head_stages import *  # noqa: F401,F403
from .weights import *  # noqa: F401,F403
from .evaluation import *  # noqa: F401,F403
from .splash import colour_splash  # noqa: F401
from .primitives import __all__ as _primitives
from .stages import __all__ as _stages
from .head_stages import __all__ as _head_stages
from .weights import __all__ as _weights
from .evaluation import __all__ as _evaluation

__all__ = [*_primitives, *_stages, *_head_stages, *_weights, *_evaluation, "colour_splash"]
