"""The chapter 01 explorer: its plain function and the widget that drives it.

Widget tests set a control's ``.value``, as a user's slider would (the pattern of ipywidgets' own
``test_interaction.py``), and check the explorer's recomputed ``state``.
"""
import math

import matplotlib.patches
import pytest
import torch

from maskrcnn_edu import roi_ops
from maskrcnn_edu.explorers.roi import (RoIExplorer, RoIView, draw_roi_view, explorer_feature_map,
                                        roi_explorer_view)


@pytest.fixture
def explorer():
    # draw=False: the state is recomputed on every change, the picture is not (faster).
    return RoIExplorer(draw=False)


def rois_of(view):
    return torch.tensor([[0.0, *view.box]])


# ---------------------------------------------------------------------------------------------
# The plain function
# ---------------------------------------------------------------------------------------------


def test_view_box_is_corner_plus_size():
    view = roi_explorer_view(x=2.5, y=1.25, w=5.3, h=4.0)
    assert view.box == pytest.approx((2.5, 1.25, 7.8, 5.25))


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 3])
def test_view_outputs_equal_the_ops_called_directly(sampling_ratio, aligned):
    view = roi_explorer_view(x=3.2, y=0.9, w=6.3, h=8.1, output_size=5, sampling_ratio=sampling_ratio,
                             aligned=aligned)
    features = explorer_feature_map()[None, None]
    expected_align = roi_ops.roi_align(features, rois_of(view), 5, sampling_ratio=sampling_ratio,
                                       aligned=aligned)
    expected_pool = roi_ops.roi_pool(features, rois_of(view), 5)
    assert view.align_output.shape == (5, 5)
    torch.testing.assert_close(view.align_output, expected_align[0, 0])
    torch.testing.assert_close(view.pool_output, expected_pool[0, 0])


def test_view_bins_and_points_are_the_ops_own():
    view = roi_explorer_view(x=1.7, y=2.2, w=7.4, h=3.9, output_size=3, sampling_ratio=2, aligned=True)
    rows, cols = roi_ops.roi_pool_bins(view.box, 3)
    ys, xs = roi_ops.roi_align_sampling_points(view.box, 3, sampling_ratio=2, aligned=True)
    assert torch.equal(view.pool_rows, rows) and torch.equal(view.pool_cols, cols)
    assert torch.equal(view.points_y, ys) and torch.equal(view.points_x, xs)


def test_view_uses_the_given_feature_map():
    ones = torch.ones(8, 8)
    view = roi_explorer_view(1.0, 1.0, 4.0, 4.0, output_size=2, feature_map=ones)
    assert torch.allclose(view.align_output, torch.ones(2, 2))
    assert torch.allclose(view.pool_output, torch.ones(2, 2))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"w": 0.0}, "w"),
        ({"w": -1.5}, "w"),
        ({"h": 0.0}, "h"),
        ({"output_size": 0}, "output_size"),
        ({"output_size": 2.5}, "output_size"),
        ({"sampling_ratio": 1.5}, "sampling_ratio"),
        ({"feature_map": torch.zeros(1, 8, 8)}, "feature_map"),
    ],
)
def test_view_rejects_bad_values_naming_the_argument(kwargs, argument):
    arguments = {"x": 1.0, "y": 1.0, "w": 3.0, "h": 3.0, **kwargs}
    with pytest.raises(ValueError, match=argument):
        roi_explorer_view(**arguments)


def test_feature_map_is_deterministic_and_seeded():
    assert torch.equal(explorer_feature_map(), explorer_feature_map())
    assert explorer_feature_map(size=10).shape == (10, 10)
    assert not torch.equal(explorer_feature_map(seed=0), explorer_feature_map(seed=1))


# ---------------------------------------------------------------------------------------------
# The widget
# ---------------------------------------------------------------------------------------------


def test_explorer_exposes_every_control_and_an_initial_state(explorer):
    assert set(explorer.controls) == {"x", "y", "w", "h", "output_size", "sampling_ratio", "aligned"}
    assert isinstance(explorer.state, RoIView)
    expected = roi_explorer_view(**explorer.values()).align_output
    torch.testing.assert_close(explorer.state.align_output, expected)


def test_setting_width_recomputes_the_state(explorer):
    x0 = explorer.controls["x"].value
    explorer.controls["w"].value = 5.3
    assert explorer.state.box[2] == pytest.approx(x0 + 5.3)


def test_sub_cell_shift_changes_roialign_but_not_roipool(explorer):
    # Both box edges stay within the same rounding interval (3.1 -> 3.3 and 8.1 -> 8.3 both
    # round to the same cells), so RoIPool must not notice the move; RoIAlign must.
    explorer.controls["w"].value = 5.0
    explorer.controls["x"].value = 3.1
    before = explorer.state
    explorer.controls["x"].value = 3.3
    after = explorer.state
    assert after.box[0] == pytest.approx(3.3)
    assert torch.equal(after.pool_output, before.pool_output)
    assert not torch.allclose(after.align_output, before.align_output)


def test_crossing_a_half_cell_changes_roipool(explorer):
    explorer.controls["w"].value = 5.0
    explorer.controls["x"].value = 3.4
    before = explorer.state.pool_output
    explorer.controls["x"].value = 3.6  # x0 now rounds to cell 4 instead of 3
    assert not torch.equal(explorer.state.pool_output, before)


@pytest.mark.parametrize("output_size", [1, 2, 5, 7])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 4])
def test_number_of_sampling_points(explorer, output_size, sampling_ratio):
    explorer.controls["output_size"].value = output_size
    explorer.controls["sampling_ratio"].value = sampling_ratio
    assert explorer.state.num_sampling_points == output_size**2 * sampling_ratio**2
    assert explorer.state.align_output.shape == (output_size, output_size)
    assert explorer.state.pool_output.shape == (output_size, output_size)


def test_adaptive_sampling_uses_ceil_of_the_bin_size(explorer):
    explorer.controls["output_size"].value = 2
    explorer.controls["w"].value = 7.0  # bins 3.5 cells wide -> 4 points across
    explorer.controls["h"].value = 2.5  # bins 1.25 cells tall -> 2 points down
    explorer.controls["sampling_ratio"].value = 0
    assert explorer.state.points_x.shape == (2, math.ceil(7.0 / 2))
    assert explorer.state.points_y.shape == (2, math.ceil(2.5 / 2))
    assert explorer.state.num_sampling_points == (2 * 4) * (2 * 2)


def test_aligned_checkbox_moves_points_half_a_cell(explorer):
    explorer.controls["w"].value = 6.0
    explorer.controls["h"].value = 4.0
    before = explorer.state
    explorer.controls["aligned"].value = True
    after = explorer.state
    assert after.aligned
    torch.testing.assert_close(after.points_x, before.points_x - 0.5)
    torch.testing.assert_close(after.points_y, before.points_y - 0.5)
    assert torch.equal(after.pool_output, before.pool_output)  # RoIPool has no `aligned`


def test_sliders_clamp_out_of_range_values(explorer):
    # As documented: the sliders keep values in their range instead of raising.
    explorer.controls["x"].value = 1000.0
    assert explorer.state.box[0] == explorer.controls["x"].max
    explorer.controls["w"].value = -3.0
    assert explorer.state.box[2] - explorer.state.box[0] == pytest.approx(explorer.controls["w"].min)
    explorer.controls["output_size"].value = 99
    assert explorer.state.output_size == explorer.controls["output_size"].max


def test_redraws_the_picture_on_every_change():
    explorer = RoIExplorer(draw=True)
    first = bytes(explorer.image.value)  # the widget holds a memoryview
    assert first.startswith(b"\x89PNG")
    explorer.controls["h"].value = 3.3
    second = bytes(explorer.image.value)
    assert second.startswith(b"\x89PNG") and second != first
    assert "image/png" in explorer._repr_mimebundle_()


def test_draw_roi_view_draws_four_panels():
    figure = draw_roi_view(roi_explorer_view(2.0, 2.0, 6.0, 5.0, output_size=3, sampling_ratio=2))
    axes = figure.get_axes()
    assert len(axes) == 4
    assert axes[0].yaxis_inverted()  # y points down, as in an image
    # RoIAlign's panel: one scatter of 3 * 2 * 3 * 2 sampling points.
    points = [c for c in axes[1].collections if c.get_offsets().shape[0] == 36]
    assert len(points) == 1


# ---------------------------------------------------------------------------------------------
# Layout: every widget fits a 1000-pixel notebook column
# ---------------------------------------------------------------------------------------------

MARGIN_PX = 4  # ipywidgets puts a 2-pixel margin on each side of a control


def px(length: str | None) -> int | None:
    return int(length.removesuffix("px")) if length and length.endswith("px") else None


def laid_out_width(widget) -> int:
    """The width a widget takes: its explicit width, else its children side by side (HBox) or stacked
    (VBox)."""
    import ipywidgets

    explicit = px(widget.layout.width)
    children = getattr(widget, "children", ())
    if isinstance(widget, ipywidgets.HBox):
        natural = sum(laid_out_width(child) + MARGIN_PX for child in children)
    elif isinstance(widget, ipywidgets.Box):
        natural = max((laid_out_width(child) for child in children), default=0)
    else:
        name = f"{type(widget).__name__} {getattr(widget, 'description', '')!r}"
        assert explicit is not None, f"{name} has no width"
        return explicit
    return explicit if explicit is not None and natural <= explicit else natural


def controls_of(widget):
    import ipywidgets

    for child in getattr(widget, "children", ()):
        if isinstance(child, ipywidgets.Box):
            yield from controls_of(child)
        else:
            yield child


def check_fits_a_1000px_column(widget, image):
    from maskrcnn_edu.explorers.shell import COLUMN_WIDTH_PX

    assert laid_out_width(widget) <= COLUMN_WIDTH_PX <= 980
    assert px(image.layout.width) <= COLUMN_WIDTH_PX
    for control in controls_of(widget):
        assert px(control.layout.width) is not None, f"{type(control).__name__} needs an explicit width"
        if getattr(control, "description", "") and hasattr(control.style, "description_width"):
            description = px(control.style.description_width)
            # A fixed description width that leaves the slider and its readout at least 250 px.
            assert description is not None and description <= px(control.layout.width) - 250


def test_roi_explorer_fits_a_1000px_column():
    explorer = RoIExplorer(draw=False)
    check_fits_a_1000px_column(explorer.widget, explorer.image)


def test_roi_explorer_picture_is_as_wide_as_its_image_widget():
    import struct

    explorer = RoIExplorer()
    png = bytes(explorer.image.value)
    width = struct.unpack(">I", png[16:20])[0]  # the PNG header's IHDR width
    assert width == px(explorer.image.layout.width) <= 960


# ---------------------------------------------------------------------------------------------
# Static pictures: the live widget plus a picture for where no widget renders
# ---------------------------------------------------------------------------------------------


def displayed_outputs(widget_shell, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    widget_shell._ipython_display_()
    return shown


def test_display_gives_the_live_widget_and_a_static_picture(monkeypatch):
    import base64

    from maskrcnn_edu.explorers.shell import STATIC_CLASS

    explorer = RoIExplorer()
    live, static = displayed_outputs(explorer, monkeypatch)
    png = base64.b64encode(bytes(explorer.image.value)).decode("ascii")
    assert live["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    # No picture in the live output: where it cannot render the widget, a front end shows a line
    # of text and then the static picture (one picture, never two).
    assert set(live) == {"application/vnd.jupyter.widget-view+json", "text/plain"}
    assert f"data:image/png;base64,{png}" in static["text/html"]
    assert f'class="{STATIC_CLASS}"' in static["text/html"]
    # The rule that hides the static picture wherever the widget before it shows a picture.
    assert f".jp-OutputArea-child:has(img) + .jp-OutputArea-child .{STATIC_CLASS}" in static["text/html"]
    assert "display: none" in static["text/html"]


def test_no_static_picture_without_drawing(monkeypatch):
    outputs = displayed_outputs(RoIExplorer(draw=False), monkeypatch)
    assert len(outputs) == 1 and "image/png" not in outputs[0]


def test_static_picture_escapes_its_caption():
    from maskrcnn_edu.explorers.shell import static_picture_html

    assert "&lt;b&gt;" in static_picture_html(b"\x89PNG", "<b>")
    assert "<b>" not in static_picture_html(b"", "<b>")


# ---------------------------------------------------------------------------------------------
# The detection stepper
# ---------------------------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from maskrcnn_edu.explorers.images import default_images  # noqa: E402
from maskrcnn_edu.explorers.stepper import STAGES, DetectionStepper, stepper_view  # noqa: E402

MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "shapes_model" / "model.pt"


@pytest.fixture(scope="module")
def shapes_images():
    from maskrcnn_edu.data import ShapesDataset

    shapes = ShapesDataset(2, seed=3)
    return {"shapes 0": shapes[0][0], "shapes 1": shapes[1][0]}


@pytest.fixture(scope="module")
def trace(model, shapes_images):
    return model.trace(shapes_images["shapes 0"])


@pytest.fixture
def stepper(model, shapes_images):
    # draw=False: every change recomputes the view (and its figure), not the PNG.
    return DetectionStepper(model, shapes_images, draw=False)


def selected_patches(figure):
    """gid -> [x0, y0, x1, y1] of the magenta patches the stepper draws for the followed detection."""
    found = {}
    for patch in figure.get_axes()[0].patches:
        if isinstance(patch, Rectangle) and (patch.get_gid() or "").startswith("selected "):
            assert patch.get_gid() not in found, f"{patch.get_gid()} drawn twice"
            (x, y), w, h = patch.get_xy(), patch.get_width(), patch.get_height()
            found[patch.get_gid()] = torch.tensor([x, y, x + w, y + h])
    return found


def solid_boxes(figure) -> int:
    """How many boxes ``draw_boxes`` drew solid on the main panel (one PatchCollection per call)."""
    return sum(len(c.get_paths()) for c in figure.get_axes()[0].collections if c.get_gid() == "solid")


def detection_boxes(figure) -> int:
    """How many boxes ``draw_detections`` drew on the main panel (one Rectangle patch each)."""
    return sum(isinstance(p, matplotlib.patches.Rectangle) for p in figure.get_axes()[0].patches)


def test_the_stages_in_order():
    assert STAGES[0] == "input" and STAGES[-1] == "final detections"
    assert STAGES.index("anchors") < STAGES.index("NMS") < STAGES.index("proposals") < STAGES.index("RoIs")
    assert STAGES.index("class scores and refinement") < STAGES.index("per-class NMS") < STAGES.index("masks")
    assert len(STAGES) == 11


def test_the_stepper_has_its_controls_and_a_first_view(stepper):
    assert set(stepper.controls) == {"image", "stage", "score_threshold", "detection"}
    assert stepper.controls["stage"].options == STAGES
    assert stepper.state.stage == "input" and stepper.state.caption.startswith("Input:")
    assert stepper.controls["detection"].value is None
    assert stepper.controls["detection"].label == "none"  # shown as "none", not as an empty menu


def test_nms_caption_counts_are_the_traces(stepper, trace):
    stepper.controls["stage"].value = "NMS"
    rpn = trace.rpn
    candidates, survivors, kept = len(rpn.pre_nms_boxes[0]), len(rpn.nms_survivors[0]), len(rpn.nms_keep[0])
    assert kept < survivors < candidates  # NMS suppressed some boxes, the top-k cut others
    counts = {"candidates": candidates, "kept": kept, "cut": survivors - kept,
              "suppressed": candidates - survivors}
    assert stepper.state.counts == counts
    caption = stepper.state.caption
    assert f"of the {candidates} candidates, {candidates - survivors} overlap" in caption
    assert f"of the {survivors} survivors" in caption
    assert f"({survivors - kept} cut): {kept} proposals" in caption


def test_nms_stage_draws_each_outcome_in_its_style(trace):
    from maskrcnn_edu.explorers.stepper_stages import NMS_DRAWN

    view = stepper_view(trace, "NMS")
    main = view.figure.get_axes()[0]
    rpn = trace.rpn
    candidates, survivors, kept = len(rpn.pre_nms_boxes[0]), len(rpn.nms_survivors[0]), len(rpn.nms_keep[0])
    drawn = {gid: sum(len(c.get_paths()) for c in main.collections if c.get_gid() == gid)
             for gid in ("solid", "dotted", "faint")}
    assert drawn == {"solid": min(kept, NMS_DRAWN), "dotted": min(survivors - kept, NMS_DRAWN),
                     "faint": min(candidates - survivors, NMS_DRAWN)}
    legend = [t.get_text() for t in main.get_legend().get_texts()]
    assert legend == [f"kept: {kept}", f"survived NMS, cut by the top-k: {survivors - kept}",
                      f"suppressed by NMS: {candidates - survivors}"]


def test_anchor_and_proposal_counts_are_the_traces(trace):
    anchors = sum(len(level) for level in trace.rpn.anchors)
    assert f"{anchors} anchors in all" in stepper_view(trace, "anchors").caption
    proposals = len(trace.rpn.proposals[0])
    assert f"the {proposals} boxes that survived NMS" in stepper_view(trace, "proposals").caption


def test_class_nms_counts_are_the_traces(trace):
    view = stepper_view(trace, "per-class NMS", score_threshold=0.0)
    heads = trace.heads
    candidates, survivors = len(heads.pre_nms[0]["scores"]), len(heads.nms_survivors[0])
    detections = len(trace.detections[0]["scores"])
    assert detections <= survivors < candidates
    assert view.counts == {"candidates": candidates, "kept": detections, "cut": survivors - detections,
                           "suppressed": candidates - survivors}
    assert f"suppressed ({candidates - survivors})" in view.caption
    assert f"({survivors - detections} cut): {detections} detections" in view.caption
    assert solid_boxes(view.figure) == detections


def test_class_nms_stage_follows_the_threshold(trace):
    scores = trace.heads.pre_nms[0]["scores"]
    threshold = float(scores.sort().values[len(scores) // 2])  # half the candidates pass
    view = stepper_view(trace, "per-class NMS", score_threshold=threshold)
    passing = scores >= threshold
    kept = torch.zeros_like(passing)
    kept[trace.heads.detection_candidates[0]] = True
    assert view.counts["candidates"] == int(passing.sum())
    assert view.counts["kept"] == int((kept & passing).sum()) == solid_boxes(view.figure)


def test_following_a_detection_highlights_its_anchor(stepper, trace):
    anchors = torch.cat(trace.rpn.anchors)
    for d in range(min(3, len(trace.detections[0]["scores"]))):
        stepper.controls["score_threshold"].value = 0.0
        stepper.controls["detection"].value = d
        stepper.controls["stage"].value = "anchors"
        # The path the Trace API documents: detection -> its RoI (a proposal) -> that proposal's anchor.
        roi = int(trace.heads.detection_rois[0][d])
        anchor = anchors[trace.rpn.proposal_anchor_index[0][roi]]
        shown = selected_patches(stepper.state.figure)
        assert list(shown) == ["selected anchor"]
        torch.testing.assert_close(shown["selected anchor"], anchor)


def test_the_followed_anchor_is_where_the_proposal_came_from(trace):
    # Independent of the indices: the anchor, moved by its predicted deltas and clipped to the
    # image, is the proposal; and the proposal refined for the detection's class is the detection.
    height, width = trace.batch.image_sizes[0]
    for d in range(len(trace.detections[0]["scores"])):
        lineage = trace.lineage(d)
        anchors = torch.cat(trace.rpn.anchors)
        assert torch.equal(lineage.anchor, anchors[lineage.anchor_index])
        clipped = lineage.rpn_box.clone()
        clipped[0::2] = clipped[0::2].clamp(0, width)
        clipped[1::2] = clipped[1::2].clamp(0, height)
        torch.testing.assert_close(clipped, lineage.proposal)
        torch.testing.assert_close(lineage.refined, trace.heads.detections[0]["boxes"][d])


def test_following_a_detection_highlights_its_proposal_and_refinement(stepper, trace):
    d = 1
    roi = int(trace.heads.detection_rois[0][d])
    proposal = trace.rpn.proposals[0][roi]
    stepper.controls["score_threshold"].value = 0.0
    stepper.controls["detection"].value = d
    for stage in ("NMS", "proposals", "RoIs"):
        stepper.controls["stage"].value = stage
        shown = selected_patches(stepper.state.figure)
        assert list(shown) == ["selected proposal"], stage
        torch.testing.assert_close(shown["selected proposal"], proposal)
    stepper.controls["stage"].value = "class scores and refinement"
    shown = selected_patches(stepper.state.figure)
    assert set(shown) == {"selected proposal", "selected refined"}
    torch.testing.assert_close(shown["selected proposal"], proposal)
    torch.testing.assert_close(shown["selected refined"], trace.heads.detections[0]["boxes"][d])
    stepper.controls["stage"].value = "final detections"  # back in the original image's pixels
    torch.testing.assert_close(selected_patches(stepper.state.figure)["selected detection"],
                               trace.detections[0]["boxes"][d])


def test_following_a_detection_shows_its_own_mask(trace):
    d = 2
    view = stepper_view(trace, "masks", score_threshold=0.0, detection=d)
    side = view.figure.get_axes()[1]
    shown = side.get_images()[0].get_array()
    np.testing.assert_allclose(shown, trace.heads.detections[0]["masks"][d, 0].numpy())
    assert f"detection {d}" in side.get_title()


def test_nothing_is_highlighted_without_a_detection(trace):
    for stage in STAGES:
        view = stepper_view(trace, stage)
        assert selected_patches(view.figure) == {} and view.highlighted == {}


def test_raising_the_threshold_removes_detections_below_it(stepper, trace):
    scores = trace.detections[0]["scores"]
    stepper.controls["stage"].value = "final detections"
    for threshold in (0.0, 0.1, 0.5, 0.95):
        stepper.controls["score_threshold"].value = threshold
        expected = [d for d, score in enumerate(scores.tolist()) if score >= threshold]
        assert stepper.state.shown_detections == expected
        assert detection_boxes(stepper.state.figure) == len(expected)  # the chapters' draw_detections
        assert [value for _, value in stepper.controls["detection"].options] == [None, *expected]
    assert len(stepper.state.shown_detections) < len(scores)  # the shipped image has low-scoring detections


def test_a_followed_detection_below_the_threshold_is_dropped(stepper, trace):
    scores = trace.detections[0]["scores"]
    weakest = int(scores.argmin())
    stepper.controls["score_threshold"].value = 0.0
    stepper.controls["detection"].value = weakest
    stepper.controls["score_threshold"].value = float(scores[weakest]) + 0.05
    assert stepper.controls["detection"].value is None and stepper.controls["detection"].label == "none"
    assert stepper.state.highlighted == {}
    strongest = int(scores.argmax())
    stepper.controls["detection"].value = strongest
    stepper.controls["score_threshold"].value = 0.1  # still above: it stays followed
    assert stepper.controls["detection"].value == strongest


def test_previous_and_next_step_through_the_stages(stepper):
    assert stepper.previous.disabled and not stepper.next.disabled
    stepper.next.click()
    assert stepper.state.stage == "anchors"
    for _ in range(20):
        stepper.next.click()
    assert stepper.state.stage == "final detections" and stepper.next.disabled
    stepper.previous.click()
    assert stepper.state.stage == "masks"


def test_each_image_is_traced_once(model, shapes_images):
    calls = []

    class Counting:
        def __init__(self, model):
            self.model, self.config = model, model.config

        def parameters(self):
            return self.model.parameters()

        def trace(self, image):
            calls.append(image)
            return self.model.trace(image)

    stepper = DetectionStepper(Counting(model), shapes_images, draw=False)
    stepper.controls["image"].value = "shapes 1"
    stepper.controls["stage"].value = "NMS"
    stepper.controls["image"].value = "shapes 0"
    stepper.controls["score_threshold"].value = 0.3
    assert len(calls) == 2
    assert torch.equal(calls[1], shapes_images["shapes 1"])
    # The view is the chosen image's: its NMS counts.
    other = stepper.traces["shapes 1"]
    stepper.controls["image"].value = "shapes 1"
    assert stepper.state.counts["kept"] == len(other.rpn.nms_keep[0])
    assert f"of the {len(other.rpn.pre_nms_boxes[0])} candidates" in stepper.state.caption


def test_the_stepper_draws_a_picture_that_fits(model, shapes_images):
    import struct

    stepper = DetectionStepper(model, {"shapes 0": shapes_images["shapes 0"]})
    check_fits_a_1000px_column(stepper.widget, stepper.image)
    first = bytes(stepper.image.value)
    assert first.startswith(b"\x89PNG")
    assert struct.unpack(">I", first[16:20])[0] == px(stepper.image.layout.width) <= 960
    stepper.controls["stage"].value = "NMS"
    assert bytes(stepper.image.value) != first
    assert "proposals." in stepper.caption.value


@pytest.mark.parametrize(
    "kwargs, argument",
    [({"stage": "nms"}, "stage"), ({"score_threshold": 1.5}, "score_threshold"),
     ({"detection": 99}, "detection"), ({"detection": -1}, "detection")],
)
def test_stepper_view_rejects_bad_values_naming_the_argument(trace, kwargs, argument):
    arguments = {"stage": "input", **kwargs}
    with pytest.raises(ValueError, match=argument):
        stepper_view(trace, **arguments)


def test_stepper_view_needs_an_inference_trace(model, shapes_images):
    from maskrcnn_edu.data import ShapesDataset

    image, target = ShapesDataset(1, seed=3)[0]
    with pytest.raises(ValueError, match="without targets"):
        stepper_view(model.trace(image, target), "input")


@pytest.mark.parametrize("images, name", [({}, "empty"), ({"flat": torch.zeros(128, 128)}, "flat"),
                                          ([torch.zeros(1, 8, 8)], "image 0"), ("photo.png", "dict")])
def test_stepper_rejects_bad_images_naming_them(model, images, name):
    with pytest.raises(ValueError, match=name):
        DetectionStepper(model, images, draw=False)


def test_default_images():
    from maskrcnn_edu.data import ShapesDataset

    images = default_images()
    shapes = ShapesDataset(3, seed=3)
    for i in range(3):
        assert torch.equal(images[f"shapes {i}"], shapes[i][0])
    assert len([name for name in images if name.startswith("sample ")]) == 20
    for name in ("astronaut", "coffee", "chelsea"):
        assert max(images[name].shape[1:]) == 256 and images[name].shape[0] == 3
        assert 0.0 <= float(images[name].min()) and float(images[name].max()) <= 1.0


def test_default_images_name_a_missing_sample_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        default_images(sample_dir=tmp_path / "nowhere")


def test_stepper_display_has_a_static_picture_of_its_first_view(model, shapes_images, monkeypatch):
    import base64
    import html

    stepper = DetectionStepper(model, {"shapes 0": shapes_images["shapes 0"]})
    live, static = displayed_outputs(stepper, monkeypatch)
    png = base64.b64encode(bytes(stepper.image.value)).decode("ascii")
    assert "image/png" not in live and png in static["text/html"]
    assert html.escape(stepper.state.caption) in static["text/html"]
    assert static["text/plain"] == stepper.state.caption
    assert stepper._repr_mimebundle_()["image/png"] == png  # the single bundle, for code that asks for one


@pytest.mark.parametrize("stage, module, drawer, figure", [
    ("anchors", "stages", "draw_cell_anchors_on", "draw_cell_anchors"),
    ("objectness top-k", "stages", "draw_top_objectness_on", "draw_top_objectness"),
    ("refined boxes", "stages", "draw_refinements_on", "draw_refinements"),
    ("NMS", "stages", "draw_nms_on", "draw_nms"),
    ("proposals", "stages", "draw_proposals_on", "draw_proposals"),
    ("class scores and refinement", "head_stages", "draw_roi_refinement_on", "draw_roi_refinement"),
    ("per-class NMS", "head_stages", "draw_class_nms_on", "draw_class_nms"),
])
def test_the_stepper_and_the_chapter_figure_share_one_drawer(trace, monkeypatch, stage, module, drawer,
                                                             figure):
    import importlib

    drawings = importlib.import_module(f"maskrcnn_edu.visualize.{module}")
    real, calls = getattr(drawings, drawer), []

    def spy(ax, *args, **kwargs):
        calls.append(ax)
        return real(ax, *args, **kwargs)

    monkeypatch.setattr(drawings, drawer, spy)
    chapter_figure = getattr(drawings, figure)(trace)
    assert calls and all(ax.figure is chapter_figure for ax in calls)
    calls.clear()
    view = stepper_view(trace, stage, score_threshold=0.0)
    assert calls == [view.figure.get_axes()[0]]  # the stepper's main panel, drawn by the same function


def test_the_stepper_follows_the_traces_lineage(trace):
    d = 1
    lineage = trace.lineage(d)
    view = stepper_view(trace, "refined boxes", detection=d)
    torch.testing.assert_close(torch.tensor(view.highlighted["anchor"]), lineage.anchor)
    torch.testing.assert_close(torch.tensor(view.highlighted["rpn box"]), lineage.rpn_box)
    assert f"from anchor {lineage.anchor_index} at P{lineage.anchor_level + 2}" in view.caption
