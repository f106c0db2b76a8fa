"""The chapter 01 explorer: its plain function and the widget that drives it.

Widget tests set a control's ``.value``, as a user's slider would (the pattern of ipywidgets' own
``test_interaction.py``), and check the explorer's recomputed ``state``.
"""
import math

import pytest
import torch

from maskrcnn_edu import roi_ops
from maskrcnn_edu.widgets import RoIExplorer, RoIView, draw_roi_view, explorer_feature_map, roi_explorer_view


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
    expected_align = roi_ops.roi_align(features, rois_of(view), 5, sampling_ratio=sampling_ratio, aligned=aligned)
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
    torch.testing.assert_close(explorer.state.align_output, roi_explorer_view(**explorer.values()).align_output)


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
