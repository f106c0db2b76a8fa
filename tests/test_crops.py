"""Crops of an annotated photograph: windows inside their region, instances cut or dropped by the
share of their pixels a window holds."""
import pytest
import torch

from maskrcnn_edu.data import check_sample
from maskrcnn_edu.data.crops import crop_sample, crop_samples, grid_windows, random_windows, visible_fraction


def _photo():
    """A 10 x 12 image with two square instances: A at rows 1..4, columns 1..4 (16 pixels), B at
    rows 5..8, columns 6..9 (16 pixels)."""
    image = torch.arange(3 * 10 * 12, dtype=torch.float32).reshape(3, 10, 12) / 360
    masks = torch.zeros(2, 10, 12, dtype=torch.bool)
    masks[0, 1:5, 1:5] = True
    masks[1, 5:9, 6:10] = True
    return image, masks


def test_visible_fraction_counts_the_pixels_inside_the_window():
    _, masks = _photo()
    assert visible_fraction(masks, (0, 0, 3, 10)).tolist() == [0.5, 0.0]  # columns 1, 2 of A's 4
    assert visible_fraction(masks, (0, 0, 12, 10)).tolist() == [1.0, 1.0]
    assert visible_fraction(torch.zeros(1, 4, 4, dtype=torch.bool), (0, 0, 2, 2)).tolist() == [0.0]


def test_a_cut_instance_keeps_its_visible_part_or_is_dropped_below_the_share():
    image, masks = _photo()
    crop, target = crop_sample(image, masks, (3, 0, 12, 10), image_id=7)  # A: 2 of 4 columns; B whole
    assert torch.equal(crop, image[:, 0:10, 3:12])
    assert target["labels"].tolist() == [1, 1] and target["image_id"] == 7
    assert target["masks"].shape == (2, 10, 9) and target["masks"].dtype == torch.uint8
    assert target["boxes"].tolist() == [[0.0, 1.0, 2.0, 5.0], [3.0, 5.0, 7.0, 9.0]]
    check_sample(crop, target, "the crop")
    _, stricter = crop_sample(image, masks, (3, 0, 12, 10), min_visible=0.75)  # A's half is not enough
    assert stricter["masks"].shape == (1, 10, 9) and stricter["boxes"].tolist() == [[3.0, 5.0, 7.0, 9.0]]


def test_a_window_with_no_instance_gives_an_empty_target():
    image, masks = _photo()
    crop, target = crop_sample(image, masks, (10, 0, 12, 3), labels=torch.tensor([1, 2]))
    assert crop.shape == (3, 3, 2)
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 3, 2)
    assert len(target["labels"]) == 0


def test_windows_outside_the_image_are_refused():
    image, masks = _photo()
    with pytest.raises(ValueError, match="not inside"):
        crop_sample(image, masks, (5, 0, 13, 10))


def test_random_windows_stay_inside_their_region_and_repeat_with_the_seed():
    region = (2, 3, 40, 20)
    windows = random_windows(region, (16, 8), 200, torch.Generator().manual_seed(0))
    assert windows.shape == (200, 4) and windows.dtype == torch.int64
    assert (windows[:, 0] >= 2).all() and (windows[:, 1] >= 3).all()
    assert (windows[:, 2] <= 40).all() and (windows[:, 3] <= 20).all()
    assert ((windows[:, 2] - windows[:, 0]) == 16).all() and ((windows[:, 3] - windows[:, 1]) == 8).all()
    assert torch.equal(windows, random_windows(region, (16, 8), 200, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="does not fit"):
        random_windows(region, (50, 8), 1)


def test_grid_windows_tile_the_region_without_overlap():
    windows = grid_windows((0, 150, 384, 303), columns=3)
    assert windows.tolist() == [[0, 150, 128, 303], [128, 150, 256, 303], [256, 150, 384, 303]]
    two_by_two = grid_windows((0, 0, 10, 7), columns=2, rows=2)
    assert two_by_two.tolist() == [[0, 0, 5, 4], [5, 0, 10, 4], [0, 4, 5, 7], [5, 4, 10, 7]]


def test_crop_samples_number_their_images():
    image, masks = _photo()
    samples = crop_samples(image, masks, grid_windows((0, 0, 12, 10), columns=2), first_id=101)
    assert [target["image_id"] for _, target in samples] == [101, 102]
    assert [len(target["labels"]) for _, target in samples] == [1, 1]
