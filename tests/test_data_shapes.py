"""ShapesDataset: the drawing functions on hand-made shapes, the invariants of every sample, and
determinism (any order of access, fresh instances, DataLoader workers)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from maskrcnn_edu.data import ShapesDataset, check_sample, collate
from maskrcnn_edu.data import shapes as S

SEED = 7
NUM = 200


@pytest.fixture(scope="module")
def samples():
    dataset = ShapesDataset(NUM, seed=SEED)
    return [dataset[i] for i in range(NUM)]


def specs(labels, centres, sizes):
    """Hand-made ShapeSpecs: black background, shape k coloured (k + 1) * 50 in every channel."""
    count = len(labels)
    return S.ShapeSpecs(
        background=np.zeros(3, np.uint8),
        labels=np.array(labels, np.int64),
        centres=np.array(centres, np.float64),
        sizes=np.array(sizes, np.float64),
        colours=np.repeat((np.arange(1, count + 1) * 50)[:, None], 3, axis=1).astype(np.uint8),
    )


def numpy_tight_box(mask):
    """Independent of tight_boxes: (first col, first row, last col + 1, last row + 1)."""
    rows, cols = np.nonzero(mask)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


# --- the drawing functions, on hand-made shapes --------------------------------------------------


def test_square_covers_the_pixels_whose_centres_are_inside():
    # centre (8, 8), half-size 3: pixel centres 5.5 .. 10.5 are within 3 of 8, so pixels 5..10.
    mask = S.rasterize(specs([S.SQUARE], [[8.0, 8.0]], [3.0]), 16)[0]
    expected = np.zeros((16, 16), bool)
    expected[5:11, 5:11] = True
    assert np.array_equal(mask, expected)


def test_circle_and_triangle_have_their_area_and_symmetry():
    masks = S.rasterize(specs([S.CIRCLE, S.TRIANGLE], [[50.0, 50.0], [50.0, 50.0]], [30.0, 30.0]), 100)
    circle, triangle = masks
    assert circle.sum() == pytest.approx(np.pi * 30**2, rel=0.01)
    # equilateral triangle of height 60: side 60 * 2 / sqrt(3), area side * 60 / 2
    assert triangle.sum() == pytest.approx(60 * 2 / np.sqrt(3) * 60 / 2, rel=0.02)
    assert np.array_equal(circle, circle[:, ::-1]) and np.array_equal(circle, circle.T)
    assert np.array_equal(triangle, triangle[:, ::-1])  # symmetric left-right
    widths = triangle.sum(axis=1)[triangle.any(axis=1)]  # per row, top to bottom
    assert np.all(np.diff(widths) >= 0) and widths[0] < 5 < 60 < widths[-1]  # apex up, base down


def test_a_later_shape_occludes_an_earlier_one():
    # two 6 x 6 squares, the second shifted by 3 px right and down: it covers a 3 x 3 corner.
    shapes = specs([S.SQUARE, S.SQUARE], [[6.0, 6.0], [9.0, 9.0]], [3.0, 3.0])
    full = S.rasterize(shapes, 16)
    front = S.front_shape(full)
    visible = S.visible_parts(front, 2)
    assert full[0].sum() == full[1].sum() == 36
    assert visible[0].sum() == 36 - 9 and visible[1].sum() == 36  # the front one is whole
    assert not visible[0, 6:9, 6:9].any() and visible[1, 6:9, 6:9].all()
    image = S.paint(shapes, front)
    assert (image[visible[0]] == 50).all() and (image[visible[1]] == 100).all()
    assert (image[front == 0] == 0).all()  # the background colour


def test_random_colours_stand_out_from_the_background():
    for i in range(200):
        drawn = S.random_shapes(np.random.default_rng([SEED, i]), 128, 4)
        difference = np.abs(drawn.colours.astype(int) - drawn.background.astype(int))
        assert difference.min() >= S.MIN_CONTRAST


# --- every sample ---------------------------------------------------------------------------------


def test_samples_have_the_documented_format(samples):
    for i, (image, target) in enumerate(samples):
        check_sample(image, target, f"shapes index {i}")
        assert image.shape == (3, 128, 128) and image.dtype == torch.float32
        assert target["boxes"].dtype == torch.float32
        assert target["image_id"] == i
        assert set(target["labels"].tolist()) <= {1, 2, 3}
    assert ShapesDataset.class_names == ["background", "square", "circle", "triangle"]


def test_masks_are_disjoint(samples):
    for _, target in samples:
        assert target["masks"].sum(dim=0).max() <= 1


def test_every_box_is_the_tight_box_of_its_mask(samples):
    for _, target in samples:
        expected = [numpy_tight_box(mask.numpy()) for mask in target["masks"]]
        assert target["boxes"].tolist() == expected


def test_no_instance_is_empty_or_smaller_than_min_pixels(samples):
    for _, target in samples:
        assert len(target["labels"]) >= 1  # the last shape drawn is never covered
        assert target["masks"].flatten(1).sum(dim=1).min() >= 16


def colour_codes(image):
    """``image [3, H, W]`` in 0..1 -> ``[H * W]`` int64, one number per 8-bit RGB colour."""
    r, g, b = (image * 255).round().long().flatten(1)
    return (r * 256 + g) * 256 + b


def test_the_image_shows_exactly_the_annotated_instances(samples):
    # Each instance is one flat colour; every pixel outside the masks is the background colour.
    # A shape removed for being too small would leave pixels of a third colour.
    for image, target in samples:
        codes = colour_codes(image)  # [H*W]
        masks = target["masks"].flatten(1).bool()  # [N, H*W]
        background = codes[~masks.any(dim=0)]
        assert (background == background[0]).all()
        for mask in masks:
            assert (codes[mask] == codes[mask][0]).all()
            assert codes[mask][0] != background[0]
        assert len(torch.unique(codes)) == len(masks) + 1


def test_removed_shapes_are_not_painted():
    # Images where a drawn shape was too small to keep have one colour per kept instance plus
    # the background: the removed shape left no trace.
    dataset = ShapesDataset(1000, seed=SEED)
    found = 0
    for i in range(len(dataset)):
        drawn = S.random_shapes(np.random.default_rng([SEED, i]), 128, 4)
        image, target = dataset[i]
        if len(target["labels"]) < len(drawn.labels):
            assert len(torch.unique(colour_codes(image))) == len(target["labels"]) + 1
            found += 1
            if found == 3:
                return
    pytest.fail(f"only {found} images with a removed shape among {len(dataset)}")


def test_classes_and_instance_counts_all_occur(samples):
    labels = torch.cat([target["labels"] for _, target in samples])
    counts = [len(target["labels"]) for _, target in samples]
    assert set(labels.tolist()) == {1, 2, 3}
    assert set(counts) == {1, 2, 3, 4}


def test_min_pixels_and_max_shapes_options():
    dataset = ShapesDataset(50, seed=SEED, max_shapes=2, min_pixels=400)
    for _, target in (dataset[i] for i in range(50)):
        assert len(target["labels"]) <= 2  # may be 0: a shape smaller than 400 pixels is removed
        assert (target["masks"].flatten(1).sum(dim=1) >= 400).all()


# --- determinism ---------------------------------------------------------------------------------


def assert_same_sample(a, b):
    image_a, target_a = a
    image_b, target_b = b
    assert torch.equal(image_a, image_b)
    assert target_a["image_id"] == target_b["image_id"]
    for key in ("boxes", "labels", "masks"):
        assert torch.equal(target_a[key], target_b[key]), key


def test_any_order_of_access_gives_the_same_samples(samples):
    dataset = ShapesDataset(NUM, seed=SEED)  # a fresh instance
    order = torch.randperm(NUM, generator=torch.Generator().manual_seed(0)).tolist()
    for i in order[:50] + order[:10]:  # shuffled, and some twice
        assert_same_sample(dataset[i], samples[i])


def test_image_i_does_not_depend_on_num_images(samples):
    assert_same_sample(ShapesDataset(8, seed=SEED)[7], samples[7])
    assert_same_sample(ShapesDataset(NUM, seed=SEED)[-1], samples[NUM - 1])


def test_different_seeds_give_different_images():
    assert not torch.equal(ShapesDataset(1, seed=0)[0][0], ShapesDataset(1, seed=1)[0][0])


def test_dataloader_workers_give_the_same_samples(samples):
    dataset = ShapesDataset(40, seed=SEED)
    loader = DataLoader(
        dataset, batch_size=4, shuffle=True, num_workers=2, collate_fn=collate,
        generator=torch.Generator().manual_seed(1),
    )
    seen = []
    for images, targets in loader:
        for image, target in zip(images, targets):
            assert_same_sample((image, target), samples[target["image_id"]])
            seen.append(target["image_id"])
    assert sorted(seen) == list(range(40)) and seen != list(range(40))  # shuffled, all there


# --- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_images": -1}, "num_images"),
        ({"num_images": 2.5}, "num_images"),
        ({"num_images": 4, "image_size": 8}, "image_size"),
        ({"num_images": 4, "seed": -3}, "seed"),
        ({"num_images": 4, "max_shapes": 0}, "max_shapes"),
        ({"num_images": 4, "min_pixels": 0}, "min_pixels"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ShapesDataset(**kwargs)


def test_index_out_of_range():
    with pytest.raises(IndexError, match="index 5"):
        ShapesDataset(5)[5]


def test_transforms_option_wraps_a_v2_transform(samples):
    flipped = ShapesDataset(NUM, seed=SEED, transforms=v2.RandomHorizontalFlip(p=1.0))
    image, target = flipped[3]
    original_image, original_target = samples[3]
    assert torch.equal(image, original_image.flip(-1))
    assert torch.equal(target["masks"], original_target["masks"].flip(-1))
    x0, y0, x1, y1 = original_target["boxes"].unbind(1)
    assert torch.equal(target["boxes"], torch.stack([128 - x1, y0, 128 - x0, y1], dim=1))
