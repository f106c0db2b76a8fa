"""ShapesDataset: the drawing functions on hand-made shapes, the invariants of every sample, and
determinism (any order of access, fresh instances, DataLoader workers); then the keras variant's
rules (sizes, centres, colours, the overlap rule, occlusion, the triangle's base) and determinism."""
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


@pytest.mark.parametrize("variant", ["edu", "keras"])
def test_dataloader_workers_give_the_same_samples(variant, samples, keras_samples):
    samples = {"edu": samples, "keras": keras_samples}[variant]
    dataset = ShapesDataset(40, seed=SEED, variant=variant)
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
        ({"num_images": 4, "variant": "coco"}, "variant must be one of 'edu', 'keras', got 'coco'"),
        ({"num_images": 4, "variant": None}, "variant must be one of 'edu', 'keras', got None"),
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


# --- the keras variant: the Keras notebook's rules ------------------------------------------------


@pytest.fixture(scope="module")
def keras_set():
    return ShapesDataset(NUM, seed=SEED, variant="keras")


@pytest.fixture(scope="module")
def keras_samples(keras_set):
    return [keras_set[i] for i in range(NUM)]


@pytest.fixture(scope="module")
def keras_drawn(keras_set):
    """Every shape drawn for each image, before the overlap rule."""
    return [keras_set.drawn_shapes(i) for i in range(NUM)]


def nominal_box_iou(a, b):
    """IoU of the squares ``centre +- size`` of two shapes, written out (independent of the package)."""
    (xa, ya), sa = a
    (xb, yb), sb = b
    overlap_x = max(0.0, min(xa + sa, xb + sb) - max(xa - sa, xb - sb))
    overlap_y = max(0.0, min(ya + sa, yb + sb) - max(ya - sa, yb - sb))
    intersection = overlap_x * overlap_y
    return intersection / ((2 * sa) ** 2 + (2 * sb) ** 2 - intersection)


def shapes_of(drawn):
    return list(zip(drawn.centres.tolist(), drawn.sizes.tolist()))


def test_keras_draws_have_the_notebooks_ranges(keras_drawn):
    sizes = np.concatenate([d.sizes for d in keras_drawn])
    pixels = np.concatenate([d.centres for d in keras_drawn]) - 0.5  # back to the notebook's pixel indices
    assert np.array_equal(sizes, sizes.round()) and np.array_equal(pixels, pixels.round())  # integers
    assert sizes.min() == 20 and sizes.max() == 32  # the whole range, ends included
    assert pixels.min() == 20 and pixels.max() == 107
    assert {len(d.labels) for d in keras_drawn} == {1, 2, 3, 4}  # before the overlap rule
    assert set(np.concatenate([d.labels for d in keras_drawn]).tolist()) == {1, 2, 3}


def test_keras_colours_span_the_full_range(keras_drawn, keras_samples):
    backgrounds = np.stack([d.background for d in keras_drawn]).astype(int)  # [NUM, 3]
    colours = np.concatenate([d.colours for d in keras_drawn]).astype(int)
    assert backgrounds.min() < 50 and backgrounds.max() > 200
    assert colours.min() < 50 and colours.max() > 200
    # no contrast guarantee: some shape has a channel within 64 levels of its background's
    closeness = [np.abs(d.colours.astype(int) - d.background.astype(int)).min() for d in keras_drawn]
    assert min(closeness) < S.MIN_CONTRAST
    # and the images show it: the pixels outside every mask are the drawn background colour
    for (image, target), drawn in zip(keras_samples, keras_drawn):
        outside = ~target["masks"].bool().any(dim=0)
        assert ((image[:, outside] * 255).round() == torch.from_numpy(drawn.background)[:, None]).all()


def test_later_wins_on_hand_made_squares():
    # Squares of half-size 10 (boxes 20 wide) on one row. Shifted by 8: IoU 12/28 = 0.43;
    # by 12: IoU 8/32 = 0.25; by 16: IoU 4/36 = 0.11.
    def keep(xs):
        return S.later_wins(specs([S.SQUARE] * len(xs), [[x, 50.0] for x in xs], [10.0] * len(xs))).tolist()

    assert keep([20, 28]) == [False, True]  # overlapping: the later-drawn stays
    assert keep([28, 20]) == [False, True]  # whichever side it is on
    assert keep([20, 32]) == [True, True]  # IoU 0.25 <= 0.3: both stay
    # A, B, C: C removes B, so B removes nothing, and A (which overlaps B, not C) stays
    assert keep([20, 28, 36]) == [True, False, True]


def test_later_wins_compares_the_same_square_for_every_class():
    # a triangle is wider than its nominal box; at a shift of 12 the boxes overlap by IoU 0.25
    drawn = specs([S.TRIANGLE, S.CIRCLE], [[20.0, 50.0], [32.0, 50.0]], [10.0, 10.0])
    assert S.later_wins(drawn).tolist() == [True, True]
    assert S.nominal_boxes(drawn).tolist() == [[10, 40, 30, 60], [22, 40, 42, 60]]


def test_keras_kept_shapes_are_greedy_later_wins(keras_set, keras_drawn):
    # Written out: going back from the last shape, a shape is kept unless a kept later one
    # overlaps it by IoU > 0.3. Then no two kept shapes overlap by more than 0.3.
    removed_somewhere = 0
    for drawn in keras_drawn:
        shapes = shapes_of(drawn)
        kept = [False] * len(shapes)
        for j in reversed(range(len(shapes))):
            later = range(j + 1, len(shapes))
            kept[j] = not any(kept[k] and nominal_box_iou(shapes[j], shapes[k]) > 0.3 for k in later)
        assert S.later_wins(drawn).tolist() == kept
        survivors = [shape for shape, keep in zip(shapes, kept) if keep]
        for a in range(len(survivors)):
            for b in range(a + 1, len(survivors)):
                assert nominal_box_iou(survivors[a], survivors[b]) <= 0.3
        removed_somewhere += not all(kept)
    assert removed_somewhere >= 10  # the rule does act


def occluded_masks(full):
    """Later masks cover earlier ones, written as a loop: ``full [K, H, W]`` -> visible ``[K, H, W]``."""
    covered = np.zeros(full.shape[1:], bool)
    visible = np.zeros_like(full)
    for k in reversed(range(len(full))):
        visible[k] = full[k] & ~covered
        covered |= full[k]
    return visible


def test_keras_instances_are_the_kept_shapes_with_occlusion(keras_drawn, keras_samples):
    for drawn, (image, target) in zip(keras_drawn, keras_samples):
        kept = drawn.subset(S.later_wins(drawn))
        visible = occluded_masks(S.rasterize(kept, 128))
        shown = visible.any(axis=(1, 2))  # empty masks are dropped
        assert np.array_equal(target["masks"].bool().numpy(), visible[shown])
        assert target["labels"].tolist() == kept.labels[shown].tolist()
        for mask, colour in zip(target["masks"].bool(), kept.colours[shown]):
            assert ((image[:, mask] * 255).round() == torch.from_numpy(colour)[:, None]).all()


def test_an_instance_covered_entirely_is_dropped():
    # A small square wholly behind a big one: boxes IoU (20/64)^2 = 0.1, so both survive the
    # overlap rule; the small one shows no pixel, is dropped, and leaves no trace.
    drawn = specs([S.SQUARE, S.SQUARE], [[64.5, 64.5], [64.5, 64.5]], [10.0, 32.0])
    assert S.later_wins(drawn).tolist() == [True, True]
    image, masks, labels = S.render(drawn, 128, min_pixels=1)
    assert len(masks) == 1 and masks[0].sum() == 65 * 65 and labels.tolist() == [S.SQUARE]
    assert len(np.unique(image.reshape(-1, 3), axis=0)) == 2  # the big square and the background


def test_keras_shapes_cross_the_border(keras_samples, keras_drawn):
    def touches_edge(masks):
        return bool(masks[:, 0, :].any() or masks[:, -1, :].any()
                    or masks[:, :, 0].any() or masks[:, :, -1].any())

    touching = sum(touches_edge(target["masks"]) for _, target in keras_samples)
    assert touching >= NUM // 4
    # ... because the shapes reach past it: half-size 32 on pixel 20 (centre 20.5) by 11.5 px,
    # 12 pixels cut off. The edu variant's do not.
    def overhang(drawn):
        before_start = drawn.sizes[:, None] - drawn.centres
        past_end = drawn.centres + drawn.sizes[:, None] - 128
        return np.maximum(before_start, past_end).max()

    assert max(overhang(d) for d in keras_drawn) == 11.5
    assert max(overhang(S.random_shapes(np.random.default_rng([SEED, i]), 128, 4)) for i in range(NUM)) <= 0


def test_keras_triangle_base_is_on_row_y_plus_s():
    mask = S.shape_mask(S.TRIANGLE, x=60, y=50, size=20)
    rows = np.nonzero(mask.any(axis=1))[0]
    assert rows.min() == 30 and rows.max() == 70  # apex row y - s, base row y + s
    assert np.nonzero(mask[30])[0].tolist() == [60]  # the apex, one pixel
    # base corners at x +- s / sin(60 deg) = 60 +- 23.09: columns 37..83
    base = np.nonzero(mask[70])[0]
    assert base.min() == 37 and base.max() == 83 and len(base) == 47
    assert np.array_equal(mask[:, :121], mask[:, :121][:, ::-1])  # symmetric about column 60


def test_keras_square_and_circle_on_integer_pixels():
    square = S.shape_mask(S.SQUARE, x=60, y=50, size=20)
    expected = np.zeros((128, 128), bool)
    expected[30:71, 40:81] = True  # pixels x - s .. x + s, y - s .. y + s, both ends included
    assert np.array_equal(square, expected)
    circle = S.shape_mask(S.CIRCLE, x=60, y=50, size=20)
    assert circle.sum() == 1257  # integer points within distance 20 of a point (Gauss's circle count)
    assert circle[50, 40] and circle[50, 80] and not circle[50, 39] and not circle[50, 81]


def test_shape_mask_rejects_an_unknown_label():
    with pytest.raises(ValueError, match="label"):
        S.shape_mask(4, 60, 60, 20)


def test_keras_samples_pass_check_sample(keras_samples):
    for i, (image, target) in enumerate(keras_samples[:50]):
        check_sample(image, target, f"keras shapes index {i}")
        assert image.shape == (3, 128, 128) and image.dtype == torch.float32
        assert target["image_id"] == i and len(target["labels"]) >= 1
        assert target["masks"].sum(dim=0).max() <= 1  # disjoint
        assert target["boxes"].tolist() == [numpy_tight_box(mask.numpy()) for mask in target["masks"]]


def test_keras_variant_is_deterministic_and_its_own(keras_samples, samples):
    fresh = ShapesDataset(NUM, seed=SEED, variant="keras")
    for i in (0, 17, NUM - 1, 17):
        assert_same_sample(fresh[i], keras_samples[i])
        assert not torch.equal(fresh[i][0], samples[i][0])  # not the edu image
    assert_same_sample(ShapesDataset(18, seed=SEED, variant="keras")[17], keras_samples[17])
    assert not torch.equal(ShapesDataset(1, seed=SEED + 1, variant="keras")[0][0], keras_samples[0][0])
    assert fresh.min_pixels == 1 and "variant='keras'" in repr(fresh)
    # its own random stream, not the edu one's numbers reused (numpy pads seed lists with zeros)
    assert S.shape_generator(SEED, 3, "keras").random() != S.shape_generator(SEED, 3, "edu").random()


def test_edu_variant_is_the_default_and_unchanged(samples):
    edu = ShapesDataset(NUM, seed=SEED, variant="edu")
    assert edu.min_pixels == 16
    for i in (0, 5, 9):
        assert_same_sample(edu[i], samples[i])
        drawn, expected = edu.drawn_shapes(i), S.random_shapes(np.random.default_rng([SEED, i]), 128, 4)
        assert np.array_equal(drawn.centres, expected.centres)
        assert np.array_equal(drawn.colours, expected.colours)


@pytest.mark.parametrize("image_size", [16, 64])
def test_keras_variant_scales_to_other_image_sizes(image_size):
    dataset = ShapesDataset(20, image_size=image_size, seed=SEED, variant="keras")
    buffer = round(20 * image_size / 128)
    for i in range(20):
        check_sample(*dataset[i], f"keras shapes {image_size} px index {i}")
        drawn = dataset.drawn_shapes(i)
        assert buffer <= drawn.sizes.min() and drawn.sizes.max() <= image_size // 4
        assert buffer <= drawn.centres.min() - 0.5 and drawn.centres.max() - 0.5 <= image_size - buffer - 1
