"""The colour splash: kept instances in colour, everything else in the grey of GREY_WEIGHTS."""
import pytest
import torch

from maskrcnn_edu.visualize import colour_splash
from maskrcnn_edu.visualize.splash import GREY_WEIGHTS, grey


def _image():
    """A 2 x 3 image: pixel (0, 0) pure red, (0, 1) pure green, (0, 2) pure blue, row 1 (0.2, 0.4, 0.6)."""
    image = torch.zeros(3, 2, 3)
    image[0, 0, 0] = image[1, 0, 1] = image[2, 0, 2] = 1.0
    image[:, 1, :] = torch.tensor([0.2, 0.4, 0.6])[:, None]
    return image


def test_kept_instances_keep_their_colour_and_the_rest_is_the_grey_the_formula_defines():
    image = _image()
    masks = torch.zeros(2, 2, 3, dtype=torch.bool)
    masks[0, 0, 0] = True  # detection 0: the red pixel, kept
    masks[1, 0, 1] = True  # detection 1: the green pixel, dropped
    out = colour_splash(image, masks, torch.tensor([True, False]))
    assert out[:, 0, 0].tolist() == [1.0, 0.0, 0.0]  # kept: its own colour
    assert out[:, 0, 1].tolist() == pytest.approx([0.7154] * 3)  # dropped: grey = 0.7154 G
    assert out[:, 0, 2].tolist() == pytest.approx([0.0721] * 3)  # outside: grey = 0.0721 B
    expected = 0.2125 * 0.2 + 0.7154 * 0.4 + 0.0721 * 0.6  # 0.37117
    assert out[:, 1, :].flatten().tolist() == pytest.approx([expected] * 9)
    assert GREY_WEIGHTS == (0.2125, 0.7154, 0.0721)


def test_shapes_dtype_and_an_instance_kept_everywhere():
    image = torch.rand(3, 5, 7)
    masks = torch.ones(1, 5, 7, dtype=torch.uint8)  # 0/1 masks work as well as bool ones
    out = colour_splash(image, masks, torch.tensor([True]))
    assert out.shape == (3, 5, 7) and out.dtype == image.dtype
    assert torch.equal(out, image)


def test_no_detections_or_none_kept_give_the_grey_image():
    image = torch.rand(3, 4, 4)
    nothing = colour_splash(image, torch.zeros(0, 4, 4, dtype=torch.bool), torch.zeros(0, dtype=torch.bool))
    none_kept = colour_splash(image, torch.ones(2, 4, 4, dtype=torch.bool), torch.tensor([False, False]))
    assert torch.equal(nothing, grey(image)) and torch.equal(none_kept, grey(image))
    assert torch.equal(nothing[0], nothing[1]) and torch.equal(nothing[1], nothing[2])


def test_wrong_shapes_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        colour_splash(torch.rand(4, 2, 2), torch.zeros(0, 2, 2), torch.zeros(0, dtype=torch.bool))
    with pytest.raises(ValueError, match="keep"):
        colour_splash(torch.rand(3, 2, 2), torch.zeros(2, 2, 2), torch.ones(3, dtype=torch.bool))


def test_the_explorer_keeps_what_the_slider_and_the_drop_list_leave():
    from maskrcnn_edu.explorers.splash import splash_explorer, splash_keep, splash_view

    image = torch.rand(3, 6, 6)
    masks = torch.zeros(3, 1, 6, 6)
    masks[0, 0, :2], masks[1, 0, 2:4], masks[2, 0, 4:] = 1.0, 1.0, 1.0  # three bands of rows
    detections = {"scores": torch.tensor([0.9, 0.7, 0.2]), "masks": masks}
    assert splash_keep(detections["scores"], 0.5, dropped=(1,)).tolist() == [True, False, False]
    view = splash_view(image, detections, min_score=0.5, dropped=(1,), draw=False)
    assert view.kept == [0]
    assert torch.equal(view.splash[:, :2], image[:, :2])
    assert torch.equal(view.splash[:, 2:], grey(image)[:, 2:])
    assert view.caption.startswith("1 of the 2 detections scoring >= 0.50 keep their colour (dropped: 1)")
    explorer = splash_explorer(image, detections, draw=False)
    explorer.controls["min_score"].value = 0.15
    assert explorer.state.kept == [0, 1, 2]
    explorer.controls["dropped"].value = (0, 2)
    assert explorer.state.kept == [1] and "67% of the pixels are grey" in explorer.state.caption
