"""roi_ops.py: the same numbers and gradients as torchvision.ops, golden values, and bad input."""
import pytest
import torch
import torchvision.ops as tvo

from maskrcnn_edu import reference, roi_ops

FEATURE_SHAPE = (3, 4, 23, 31)  # N, C, H, W


def make_rois(generator, num_images=3, k=60, image_hw=(92.0, 124.0)):
    """``[K, 5]`` boxes in image pixels (the features are 1/4 of the image), with the hard cases.

    Random boxes plus: partly outside the map, wholly outside it, smaller than one bin,
    smaller than one cell, zero size, and the whole image.
    """
    h, w = image_hw
    top_left = torch.rand(k, 2, generator=generator) * torch.tensor([w, h]) - 10
    size = torch.rand(k, 2, generator=generator) * 60
    random = torch.cat([top_left, top_left + size], dim=1)
    special = torch.tensor(
        [
            [-20.0, -15.0, 30.0, 25.0],  # partly outside, top left
            [100.0, 70.0, 160.0, 130.0],  # partly outside, bottom right
            [200.0, 200.0, 260.0, 240.0],  # wholly outside
            [-90.0, -60.0, -70.0, -40.0],  # wholly outside, negative side
            [40.0, 40.0, 41.5, 40.7],  # smaller than one bin and than one cell
            [10.2, 10.2, 10.2, 10.2],  # zero size
            [0.0, 0.0, w, h],  # the whole image
            [-3.0, 5.0, 2.0, 9.0],  # inside the one-cell border band where reads are clamped
        ]
    )
    boxes = torch.cat([random, special])
    batch_index = torch.randint(0, num_images, (len(boxes), 1), generator=generator).float()
    return torch.cat([batch_index, boxes], dim=1)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def features(gen):
    return torch.randn(*FEATURE_SHAPE, generator=gen)


# --- the same as torchvision ----------------------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("output_size", [(7, 7), (3, 5)])
def test_roi_align_forward_and_gradient_match_torchvision(features, gen, aligned, sampling_ratio,
                                                         output_size):
    rois = make_rois(gen)
    args = (output_size, 0.25, sampling_ratio, aligned)
    ours_in, theirs_in = features.clone().requires_grad_(), features.clone().requires_grad_()
    ours = roi_ops.roi_align(ours_in, rois, *args)
    theirs = tvo.roi_align(theirs_in, rois, *args)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    upstream = torch.randn(theirs.shape, generator=gen)  # a non-uniform gradient from above
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, atol=1e-4, rtol=0)


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 1 / 16])
@pytest.mark.parametrize("output_size", [(7, 7), (2, 4), (1, 1)])
def test_roi_pool_forward_and_gradient_match_torchvision(features, gen, spatial_scale, output_size):
    rois = make_rois(gen)
    rois[:, 1:] *= 0.25 / spatial_scale  # keep the boxes at the same place on the map
    ours_in, theirs_in = features.clone().requires_grad_(), features.clone().requires_grad_()
    ours = roi_ops.roi_pool(ours_in, rois, output_size, spatial_scale)
    theirs = tvo.roi_pool(theirs_in, rois, output_size, spatial_scale)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    upstream = torch.randn(theirs.shape, generator=gen)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, atol=1e-4, rtol=0)


def test_half_cell_boxes_round_like_c(features):
    """RoIPool rounds x.5 away from zero, as C's round() in torchvision's kernel (not to even)."""
    rois = torch.tensor([[0, 2.5, 4.5, 10.5, 12.5], [1, -1.5, 0.5, 6.5, 3.5]])
    ours = roi_ops.roi_pool(features, rois, 3, 1.0)
    torch.testing.assert_close(ours, tvo.roi_pool(features, rois, 3, 1.0), atol=0, rtol=0)


@pytest.mark.parametrize("op", ["roi_align", "roi_pool"])
def test_list_of_boxes_is_the_same_as_batch_indices(features, gen, op):
    rois = make_rois(gen)
    per_image = [rois[rois[:, 0] == i, 1:] for i in range(FEATURE_SHAPE[0])]
    fn = getattr(roi_ops, op)
    torch.testing.assert_close(
        fn(features, per_image, 5, 0.25),
        getattr(tvo, op)(features, per_image, 5, 0.25),
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.parametrize("op", ["roi_align", "roi_pool"])
def test_empty_box_list(features, op):
    fn = getattr(roi_ops, op)
    assert fn(features, torch.zeros(0, 5), (7, 6), 0.25).shape == (0, 4, 7, 6)
    if op == "roi_align":
        assert fn(features, torch.zeros(0, 5), (7, 6), 0.25, sampling_ratio=2).shape == (0, 4, 7, 6)
    boxes = [torch.zeros(0, 4), torch.tensor([[1.0, 2.0, 30.0, 40.0]]), torch.zeros(0, 4)]
    out = fn(features, boxes, 7, 0.25)
    assert out.shape == (1, 4, 7, 7)


def test_adaptive_roi_align_in_chunks_is_the_same(features, gen, monkeypatch):
    rois = make_rois(gen)
    whole = roi_ops.roi_align(features, rois, 7, 0.25, -1)
    monkeypatch.setattr(roi_ops, "MAX_BAG_ENTRIES", 1000)  # a few boxes per chunk
    torch.testing.assert_close(roi_ops.roi_align(features, rois, 7, 0.25, -1), whole, atol=0, rtol=0)


def test_roi_align_gradcheck_double(gen):
    """Autograd through the bags is the true derivative (finite differences, float64)."""
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 1.1, 4.2, 5.0], [1, -0.7, 2.0, 6.5, 3.1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_ops.roi_align(t, rois, 3, 1.0, 2, True), (x,))


def test_weighted_bags_backward_is_embedding_bags():
    """``_WeightedBags``' hand-written backward: the table gradient of ``embedding_bag`` itself, with
    rows read by no bag, rows read twice in one bag, and an empty batch of bags."""
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    index = torch.randint(40, (30, 8), generator=gen)  # rows 40..49 are never read
    index[0, :4] = 7  # one row four times in one bag
    weight = torch.rand(30, 8, generator=gen, dtype=torch.float64)
    grad = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    ours, theirs = table.clone().requires_grad_(), table.clone().requires_grad_()
    out = roi_ops._WeightedBags.apply(index, ours, weight)
    expected = torch.nn.functional.embedding_bag(index, theirs, per_sample_weights=weight, mode="sum")
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    out.backward(grad), expected.backward(grad)
    torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-12, rtol=0)
    assert ours.grad[40:].abs().max() == 0
    empty = table.clone().requires_grad_()
    roi_ops._WeightedBags.apply(index[:0], empty, weight[:0]).sum().backward()
    assert empty.grad.shape == table.shape and empty.grad.abs().max() == 0


def test_weights_that_need_a_gradient_get_one():
    """Boxes that require grad: the bag weights then need a gradient, which ``_WeightedBags`` does not
    give, so ``roi_align`` falls back to ``embedding_bag`` and the boxes get theirs."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 6, 7, generator=gen, dtype=torch.float64)
    corners = torch.tensor([[0.3, 1.1, 4.2, 5.0]], dtype=torch.float64, requires_grad=True)
    image = torch.zeros(1, 1, dtype=torch.float64)
    def align(c):
        return roi_ops.roi_align(x, torch.cat([image, c], 1), 3, 1.0, 2, True)

    assert torch.autograd.gradcheck(align, (corners,))


# --- defects found by running torchvision's and detectron2's test cases ---------------------------------


@pytest.mark.parametrize("op, args", [("roi_align", (7, 1.0, 0, True)), ("roi_align", (7, 1.0, -1, True)),
                                      ("roi_align", (7, 1.0, 2, True)), ("roi_align", (7, 1.0, -1, False)),
                                      ("roi_pool", (7, 1.0))])
@pytest.mark.parametrize("rois", [torch.tensor([[0, 3.0, 4.0, 5.0, 4.0]]), torch.zeros(0, 5)],
                         ids=["zero-height", "no-rois"])
def test_roi_output_stays_on_the_autograd_graph_when_nothing_is_sampled(op, args, rois):
    # A zero-height aligned box samples ceil(0) = 0 points per bin (adaptive), and no RoIs sample nothing:
    # the output was a fresh zeros tensor, cut off from x, and backward() raised. torchvision: gradient 0.
    ours_in, theirs_in = (torch.arange(25.0).reshape(1, 1, 5, 5).requires_grad_() for _ in range(2))
    ours, theirs = getattr(roi_ops, op)(ours_in, rois, *args), getattr(tvo, op)(theirs_in, rois, *args)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, atol=1e-4, rtol=0)


def test_multiscale_roi_align_without_boxes_stays_on_the_autograd_graph(gen):
    features = [torch.randn(2, 4, 32 // s, 32 // s, generator=gen).requires_grad_() for s in (4, 8)]
    pooler = roi_ops.MultiScaleRoIAlign(7, sampling_ratio=-1, aligned=True)
    pooled = pooler(features, [torch.zeros(0, 4)] * 2, [(32, 32)] * 2)
    assert pooled.shape == (0, 4, 7, 7)
    pooled.sum().backward()
    assert all(f.grad is not None and f.grad.abs().max() == 0 for f in features)


INVERTED_BOXES = torch.tensor([
    [0, 1.0, 1.0, 0.0, 0.0],  # inverted on both axes, by one pixel
    [0, 20.0, 15.0, 3.0, 2.0],  # inverted on both axes, by many bins
    [1, 6.0, 6.0, 5.8, 5.8],  # inverted by less than one cell
    [1, 4.0, 2.0, 4.0, 12.0],  # zero width
])


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2])
@pytest.mark.parametrize("output_size", [1, (3, 2)])
def test_roi_align_on_inverted_boxes_matches_torchvision(gen, aligned, sampling_ratio, output_size):
    # Aligned and adaptive, an inverted box has a negative size and so a negative grid, ceil(size / bins):
    # arange() raised. torchvision's loops over a negative count run zero times: the bins are 0.
    x = torch.randn(2, 3, 16, 18, generator=gen)
    ours_in, theirs_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    args = (output_size, 1.0, sampling_ratio, aligned)
    ours = roi_ops.roi_align(ours_in, INVERTED_BOXES, *args)
    theirs = tvo.roi_align(theirs_in, INVERTED_BOXES, *args)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    upstream = torch.randn(theirs.shape, generator=gen)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, atol=1e-4, rtol=0)
    # The drawing helper gives the grid roi_align reads: none at all for this box, aligned and adaptive.
    ys, xs = roi_ops.roi_align_sampling_points([1.0, 1.0, 0.0, 0.0], output_size, 1.0, sampling_ratio,
                                               aligned)
    assert ys.shape[1] == xs.shape[1] == (sampling_ratio if sampling_ratio > 0 else 1 - aligned)


@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2])
def test_roi_align_on_boxes_inverted_along_one_axis_is_the_loop_twin(gen, sampling_ratio):
    # Here torchvision's CPU kernel itself fails: its table of grid_h * grid_w * PH * PW points has a negative
    # size ("cannot create std::vector larger than max_size()"). The loop twin says what its loops mean:
    # aligned and adaptive, zero points along the inverted axis, so the bins are 0.
    x = torch.randn(1, 3, 16, 18, generator=gen, dtype=torch.float64)
    rois = torch.tensor([[0, 9.0, 2.0, 4.0, 12.0], [0, 2.0, 9.0, 12.0, 4.0]], dtype=torch.float64)
    for aligned in (True, False):
        ours = roi_ops.roi_align(x, rois, (3, 2), 1.0, sampling_ratio, aligned)
        loop = reference.roi_align_loop(x, rois, (3, 2), 1.0, sampling_ratio, aligned)
        torch.testing.assert_close(ours, loop)
    if sampling_ratio <= 0:
        assert roi_ops.roi_align(x, rois, (3, 2), 1.0, sampling_ratio, True).abs().max() == 0


# --- golden values on hand-made cases -------------------------------------------------------------


def test_roi_align_reads_a_linear_ramp_exactly():
    """Bilinear interpolation of a linear function is exact, so each bin equals the ramp at its centre."""
    height, width = 10, 12
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                            torch.arange(width, dtype=torch.float64), indexing="ij")
    ramp = (2 * xs + 3 * ys)[None, None]  # [1, 1, H, W]
    box = [2.0, 1.0, 9.0, 8.0]  # pixels; aligned=True puts its left edge at x = 1.5 on the map
    rois = torch.tensor([[0.0, *box]], dtype=torch.float64)
    out = roi_ops.roi_align(ramp, rois, (7, 7), 1.0, 2, aligned=True)
    centres_x = box[0] - 0.5 + (torch.arange(7, dtype=torch.float64) + 0.5)
    centres_y = box[1] - 0.5 + (torch.arange(7, dtype=torch.float64) + 0.5)
    expected = 2 * centres_x[None, :] + 3 * centres_y[:, None]
    torch.testing.assert_close(out[0, 0], expected, atol=1e-12, rtol=0)


def test_roi_pool_golden_max_over_quantized_bins():
    grid = torch.arange(36.0).reshape(1, 1, 6, 6)  # value = 6 * row + col: max at each bin's bottom right
    # box (1.4, 0.6)-(4.4, 3.2) rounds to cells x 1..4, y 1..3 (inclusive): 4 x 3 cells in 2 x 2 bins.
    out = roi_ops.roi_pool(grid, torch.tensor([[0.0, 1.4, 0.6, 4.4, 3.2]]), 2, 1.0)
    # rows: bin 0 = floor(0)..ceil(1.5) = rows 1, 2; bin 1 = floor(1.5)..ceil(3) = rows 2, 3
    # cols: bin 0 = cols 1, 2; bin 1 = cols 3, 4
    assert out[0, 0].tolist() == [[6 * 2 + 2, 6 * 2 + 4], [6 * 3 + 2, 6 * 3 + 4]]


def test_quantization_makes_roi_pool_blind_to_small_shifts(features):
    box = torch.tensor([[0, 40.0, 32.0, 80.0, 72.0]])
    shifted = box + torch.tensor([0, 1.0, 1.0, 1.0, 1.0])  # a quarter of a cell at spatial_scale 1/4
    assert torch.equal(roi_ops.roi_pool(features, box, 7, 0.25), roi_ops.roi_pool(features, shifted, 7, 0.25))
    assert not torch.allclose(roi_ops.roi_align(features, box, 7, 0.25, 2),
                              roi_ops.roi_align(features, shifted, 7, 0.25, 2))


def test_sampling_points_helper_is_what_roi_align_reads():
    ys, xs = roi_ops.roi_align_sampling_points([3.0, 2.0, 17.0, 9.0], (2, 7), 1.0)
    assert ys.shape == (2, 4) and xs.shape == (7, 2)
    assert xs[0].tolist() == [3.5, 4.5] and ys[0].tolist() == pytest.approx([2.4375, 3.3125, 4.1875, 5.0625])


def test_pool_bins_helper():
    rows, cols = roi_ops.roi_pool_bins([1.4, 0.6, 4.4, 3.2], 2, 1.0)
    assert rows.tolist() == [[1, 3], [2, 4]] and cols.tolist() == [[1, 3], [3, 5]]


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", [roi_ops.roi_align, roi_ops.roi_pool])
def test_bad_input_raises_value_error_naming_the_argument(features, op):
    with pytest.raises(ValueError, match=r"boxes must be a \[K, 5\].*got a tensor of shape \(3, 4\)"):
        op(features, torch.zeros(3, 4), 7)
    with pytest.raises(ValueError, match=r"boxes\[1\] must be a \[K_i, 4\].*got a tensor of shape \(2, 5\)"):
        op(features, [torch.zeros(1, 4), torch.zeros(2, 5)], 7)
    not_4d = r"input must be a 4-D feature map \[N, C, H, W\], got a tensor of shape \(4, 23, 31\)"
    with pytest.raises(ValueError, match=not_4d):
        op(features[0], torch.zeros(1, 5), 7)
    for bad_size in (0, -3, (7, 0), (2, 3, 4)):
        with pytest.raises(ValueError, match=r"output_size must be a positive int.*got"):
            op(features, torch.zeros(1, 5), bad_size)
    with pytest.raises(ValueError, match=r"boxes must be a \[K, 5\] tensor or a list .*got a dict"):
        op(features, {"boxes": torch.zeros(1, 4)}, 7)
    with pytest.raises(ValueError, match=r"batch indices outside 0..2"):
        op(features, torch.tensor([[3.0, 0, 0, 4, 4]]), 7)


# --- mixed precision ---------------------------------------------------------------------------------


def bf16_case(gen):
    """A bfloat16 feature map (what a convolution gives under CPU autocast) and float32 boxes.

    The map is 50 x 60 cells at stride 4, so box edges reach 240 px, where bfloat16's spacing is 1 px:
    computed in 16 bits, the boxes alone would move by up to a quarter of a cell.
    """
    features = torch.randn(2, 8, 50, 60, generator=gen).bfloat16()
    return features, make_rois(gen, num_images=2, image_hw=(200.0, 240.0))


@pytest.mark.parametrize("op, args", [("roi_align", (7, 0.25, 2)), ("roi_align", (7, 0.25, -1, True)),
                                      ("roi_pool", (7, 0.25))])
def test_under_autocast_the_ops_compute_in_float32(gen, op, args):
    """Under bfloat16 autocast the result is the float32 result, rounded once to bfloat16.

    (Computed in bfloat16, RoIAlign differed from float32 by up to 2.0 and RoIPool by up to 5.1 on
    these unit-variance features: the boxes had moved, and RoIPool's bins had taken other cells.)
    """
    fn = getattr(roi_ops, op)
    features, rois = bf16_case(gen)
    in_float32 = fn(features.float(), rois, *args)  # the same (bf16-valued) features, read in float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = fn(features, rois, *args)
        unchanged = fn(features.float(), rois, *args)  # a float32 map stays float32
    assert mixed.dtype == torch.bfloat16 and unchanged.dtype == torch.float32
    # rtol: the result's bfloat16 rounding.
    torch.testing.assert_close(mixed.float(), in_float32, atol=1e-6, rtol=2**-8)
    assert torch.equal(mixed, in_float32.bfloat16())
    assert torch.equal(unchanged, in_float32)


def test_under_autocast_the_gradient_is_the_float32_one(gen):
    features, rois = bf16_case(gen)
    upstream = torch.randn(len(rois), 8, 7, 7, generator=gen)
    wide = features.float().requires_grad_()
    (roi_ops.roi_align(wide, rois, 7, 0.25, 2) * upstream).sum().backward()
    narrow = features.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = roi_ops.roi_align(narrow, rois, 7, 0.25, 2)
    (pooled.float() * upstream).sum().backward()
    assert narrow.grad.dtype == torch.bfloat16
    # The upstream gradient passes through the bfloat16 output first: agreement to a few bfloat16 steps.
    torch.testing.assert_close(narrow.grad.float(), wide.grad, atol=0.05, rtol=2**-6)


def test_multiscale_roi_align_under_autocast_computes_in_float32(gen):
    image_size = (256, 320)
    features = [torch.randn(2, 8, image_size[0] // s, image_size[1] // s, generator=gen).bfloat16()
                for s in (4, 8, 16, 32)]
    top_left = torch.rand(2, 30, 2, generator=gen) * torch.tensor([300.0, 240.0])
    boxes = [torch.cat([t, t + 4 + torch.rand(30, 2, generator=gen) * 200], dim=1) for t in top_left]
    pooler = roi_ops.MultiScaleRoIAlign(7, sampling_ratio=2)
    in_float32 = pooler([f.float() for f in features], boxes, [image_size] * 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = pooler(features, boxes, [image_size] * 2)
    assert mixed.dtype == torch.bfloat16
    torch.testing.assert_close(mixed.float(), in_float32, atol=1e-6, rtol=2**-8)


@pytest.mark.parametrize("canonical_size", [224.0, 112.0, 56.0])
def test_multiscale_roi_align_equals_torchvision_for_any_canonical_size(gen, canonical_size):
    from collections import OrderedDict

    from torchvision.ops import MultiScaleRoIAlign as TorchvisionPooler

    image_size = (128, 160)
    features = [torch.randn(2, 4, image_size[0] // s, image_size[1] // s, generator=gen)
                for s in (4, 8, 16, 32)]
    top_left = torch.rand(2, 40, 2, generator=gen) * torch.tensor([140.0, 110.0])
    boxes = [torch.cat([t, t + 2 + torch.rand(40, 2, generator=gen) * 120], dim=1) for t in top_left]
    pooler = roi_ops.MultiScaleRoIAlign(7, sampling_ratio=2, canonical_size=canonical_size)
    ours = pooler(features, boxes, [image_size] * 2)
    theirs = TorchvisionPooler(["0", "1", "2", "3"], 7, 2, canonical_scale=int(canonical_size))(
        OrderedDict((str(i), f) for i, f in enumerate(features)), boxes, [image_size] * 2)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_fpn_level_golden_values_for_a_smaller_canonical_size():
    sides = torch.tensor([8.0, 27.9, 28.0, 56.0, 111.9, 112.0, 500.0])
    boxes = torch.stack([torch.zeros(7), torch.zeros(7), sides, sides], dim=1)
    # canonical 56: 56 px -> level 4, 28 -> 3, below 28 -> 2 (clamped), 112 and up -> 5 (clamped)
    assert roi_ops.fpn_level(boxes, 2, 5, canonical_size=56.0).tolist() == [2, 2, 3, 4, 4, 5, 5]
    assert roi_ops.fpn_level(boxes, 2, 5).tolist() == [2, 2, 2, 2, 2, 3, 5]  # the default, 224
