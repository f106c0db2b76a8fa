"""Chapters 06 and 07's explorers: the augmentation browser and the loss curves, driven through their
controls' ``.value``."""
import numpy as np
import pytest
import torch

from maskrcnn_edu.data import DetectionTransform, ShapesDataset, tight_boxes
from maskrcnn_edu.explorers.training import (AUGMENTATIONS, augment, augmentation, augmentation_explorer,
                                             loss_curve_explorer, loss_curve_view, read_scalars, smooth)

CLASS_NAMES = ("background", "square", "circle", "triangle")


@pytest.fixture(scope="module")
def sample():
    return ShapesDataset(4, seed=3)[3]  # four shapes, a triangle partly behind a circle


def test_flip_mirrors_masks_and_boxes_or_leaves_them(sample):
    image, target = sample
    width = image.shape[-1]
    mirrored_boxes = torch.stack([width - target["boxes"][:, 2], target["boxes"][:, 1],
                                  width - target["boxes"][:, 0], target["boxes"][:, 3]], dim=1)
    flips = 0
    for seed in range(8):
        new_image, new_target = augment(image, target, "horizontal flip (p = 0.5)", seed)
        if torch.equal(new_image, image.flip(-1)):
            flips += 1
            assert torch.equal(new_target["masks"], target["masks"].flip(-1))
            assert torch.equal(new_target["boxes"], mirrored_boxes)
        else:
            assert torch.equal(new_image, image)
            assert torch.equal(new_target["masks"], target["masks"])
            assert torch.equal(new_target["boxes"], target["boxes"])
        assert torch.equal(new_target["labels"], target["labels"])
    assert 0 < flips < 8  # p = 0.5: both outcomes among 8 seeds


def test_colour_jitter_changes_pixels_only(sample):
    image, target = sample
    new_image, new_target = augment(image, target, "colour jitter", seed=1)
    assert not torch.equal(new_image, image)
    for key in ("boxes", "labels", "masks"):
        assert torch.equal(new_target[key], target[key])


def test_same_seed_same_sample_and_the_global_generator_is_untouched(sample):
    image, target = sample
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = augment(image, target, "train_transforms()", seed=5)
    second = augment(image, target, "train_transforms()", seed=5)
    other = augment(image, target, "train_transforms()", seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1]["masks"], second[1]["masks"])
    assert not torch.equal(first[0], other[0])


def test_explorer_seed_and_transform_controls(sample):
    image, target = sample
    explorer = augmentation_explorer(image, target, CLASS_NAMES, draw=False)
    assert explorer.controls["transform"].options == tuple(AUGMENTATIONS)
    for name in AUGMENTATIONS:
        explorer.controls["transform"].value = name
        for seed in (0, 7, 42):
            explorer.controls["seed"].value = seed
            result = explorer.state.result
            assert (result.name, result.seed) == (name, seed)
            expected_image, expected_target = augment(image, target, name, seed)
            assert torch.equal(result.augmented_image, expected_image)
            masks = result.augmented_target["masks"]
            assert result.area_after == int(masks.sum()) and result.objects_after == len(masks)
            assert torch.equal(result.augmented_target["boxes"], tight_boxes(masks))
            assert result.boxes_are_tight
            kept = f"{name}, seed {seed}: {len(masks)} of {len(target['labels'])} objects kept"
            assert kept in explorer.state.caption
            assert f"→ {result.area_after} px" in explorer.state.caption


def test_scale_jitter_remakes_the_box_of_an_object_cut_at_the_border():
    # A triangle near the bottom edge, zoomed in by seed 5: its base is cut off. v2 moves the box's
    # corners and clamps them (6 px too wide on each side here); the transform re-makes the box
    # from what is left of the mask.
    image, target = ShapesDataset(6, seed=2, max_shapes=1)[5]
    name = "scale jitter (0.75..1.25)"
    _, new_target = augment(image, target, name, seed=5)
    box = new_target["boxes"][0]
    assert torch.equal(new_target["boxes"], tight_boxes(new_target["masks"])) and box[3] == image.shape[-1]
    corners_only = DetectionTransform(augmentation(name).transform.transforms[0], boxes_from_masks=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        v2_box = corners_only(image, target)[1]["boxes"][0]
    assert v2_box[0] < box[0] - 4 and v2_box[2] > box[2] + 4


def test_unknown_augmentation_names_the_choices(sample):
    with pytest.raises(ValueError, match="augmentation name must be one of"):
        augment(*sample, "rotate", 0)


def test_smooth_is_tensorboards_debiased_average():
    assert np.allclose(smooth([1.0, 0.0], 0.5), [1.0, 1 / 3])  # (0.5 * 0.5 + 0) / (1 - 0.25)
    assert np.allclose(smooth([3.0, 1.0, 2.0], 0.0), [3.0, 1.0, 2.0])
    assert np.allclose(smooth(np.full(50, 2.5), 0.9), 2.5)  # debiased: no ramp up from zero
    with pytest.raises(ValueError, match="smoothing weight"):
        smooth([1.0], 1.0)


@pytest.fixture()
def logged_run(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    losses = {"loss/total": [4.0, 2.0, 1.0, 0.5, 0.75], "loss/loss_mask": [2.0, 1.0, 0.25, 0.5, 0.125],
              "lr": [0.1] * 5}
    for tag, values in losses.items():
        for step, value in enumerate(values, start=1):
            writer.add_scalar(tag, value, step)
    writer.close()
    return tmp_path, losses


def test_read_scalars_reads_what_was_written(logged_run):
    log_dir, losses = logged_run
    curves = read_scalars(log_dir)
    assert set(curves) == set(losses)
    for tag, values in losses.items():
        steps, read = curves[tag]
        assert steps.tolist() == [1, 2, 3, 4, 5] and np.allclose(read, values)
    with pytest.raises(ValueError, match="not a folder"):
        read_scalars(log_dir / "missing")


def test_loss_curve_explorer_controls(logged_run):
    curves = read_scalars(logged_run[0])
    explorer = loss_curve_explorer(curves, draw=False)
    assert explorer.controls["loss"].options == ("loss/total", "loss/loss_mask")  # the total first, no lr
    explorer.controls["smoothing"].value = 0.0
    first = "loss/total: 5 logged steps; first 4.0000, last 0.7500 (smoothed 0.7500, 18.8% of the first)"
    assert first in explorer.state.caption
    assert "smallest 0.5000 at step 4" in explorer.state.caption
    explorer.controls["loss"].value = "loss/loss_mask"
    explorer.controls["smoothing"].value = 0.5
    view = explorer.state
    assert np.allclose(view.smoothed, smooth([2.0, 1.0, 0.25, 0.5, 0.125], 0.5))
    assert f"smoothed {view.smoothed[-1]:.4f}" in view.caption and "smallest 0.1250 at step 5" in view.caption
    with pytest.raises(ValueError, match="loss must be one of"):
        loss_curve_view(curves, "loss/nothing", 0.0, draw=False)


def test_views_draw(sample, logged_run):
    image, target = sample
    assert bytes(augmentation_explorer(image, target, CLASS_NAMES).image.value).startswith(b"\x89PNG")
    assert bytes(loss_curve_explorer(read_scalars(logged_run[0])).image.value).startswith(b"\x89PNG")
