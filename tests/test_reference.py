"""reference.py: every loop equals its vectorized twin and torchvision, plus hand-worked golden cases.

The loops are slow, so the inputs are small; the golden cases are small enough to check on paper.
"""
import pytest
import torch
import torchvision.ops as tvo
from torchvision.models.detection._utils import Matcher as TorchvisionMatcher
from torchvision.models.detection.roi_heads import paste_masks_in_image

from maskrcnn_edu import boxes as box_ops
from maskrcnn_edu import reference, roi_ops
from maskrcnn_edu.matching import BACKGROUND, IGNORE, Matcher
from maskrcnn_edu.masks import paste_masks


def random_boxes(generator, n, extent=40.0, max_size=15.0):
    """``[n, 4]`` boxes with top-left in ``[-5, extent)`` and sizes in ``[0.5, max_size)``."""
    top_left = torch.rand(n, 2, generator=generator) * (extent + 5) - 5
    size = torch.rand(n, 2, generator=generator) * (max_size - 0.5) + 0.5
    return torch.cat([top_left, top_left + size], dim=1)


def ramp_4x4() -> torch.Tensor:
    """``[1, 1, 4, 4]`` feature map with cell (i, j) = 4 i + j, i.e. f(y, x) = 4 y + x, values 0..15.

    Bilinear interpolation of a linear function is exact, so any point inside reads 4 y + x.
    """
    return torch.arange(16.0).reshape(1, 1, 4, 4)


# --- box_iou_loop ---------------------------------------------------------------------------------


def test_box_iou_loop_golden():
    # [0,0,2,2] and [1,1,3,3]: the overlap is the unit square [1,2]x[1,2], area 1;
    # union = 4 + 4 - 1 = 7, so IoU = 1/7. A box with itself: 1. Disjoint boxes: 0.
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(reference.box_iou_loop(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))


def test_box_iou_loop_matches_fast_and_torchvision():
    gen = torch.Generator().manual_seed(0)
    boxes1, boxes2 = random_boxes(gen, 7, extent=20), random_boxes(gen, 9, extent=20)
    loop = reference.box_iou_loop(boxes1, boxes2)
    assert (loop > 0).any() and (loop == 0).any()  # both overlapping and disjoint pairs
    torch.testing.assert_close(loop, box_ops.box_iou(boxes1, boxes2))
    torch.testing.assert_close(loop, tvo.box_iou(boxes1, boxes2))


# --- nms_loop -------------------------------------------------------------------------------------


def test_nms_loop_golden():
    # A = [0,0,10,10] (score 0.9), B = [5,0,15,10] (0.8), C = [10,0,20,10] (0.7), stored as C, A, B.
    # IoU(A, B) = 50 / 150 = 1/3 > 0.3: A suppresses B. IoU(B, C) = 1/3 too, but B is gone, and
    # IoU(A, C) = 0: C survives. Greedy NMS keeps A then C -> indices [1, 0].
    boxes = torch.tensor([[10.0, 0.0, 20.0, 10.0], [0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    scores = torch.tensor([0.7, 0.9, 0.8])
    expected = torch.tensor([1, 0])
    for nms in (reference.nms_loop, box_ops.nms, tvo.nms):
        assert torch.equal(nms(boxes, scores, 0.3), expected)
    # At a threshold above 1/3 nothing overlaps enough: all three, best first.
    assert torch.equal(reference.nms_loop(boxes, scores, 0.4), torch.tensor([1, 2, 0]))
    # Suppression needs IoU strictly above the threshold: [0,0,4,1] and [0,0,2,1] have IoU 2/4 = 0.5
    # exactly (no rounding), so at threshold 0.5 both stay; at 0.49 the second goes.
    pair, pair_scores = torch.tensor([[0.0, 0.0, 4.0, 1.0], [0.0, 0.0, 2.0, 1.0]]), torch.tensor([0.9, 0.8])
    for nms in (reference.nms_loop, box_ops.nms, tvo.nms):
        assert torch.equal(nms(pair, pair_scores, 0.5), torch.tensor([0, 1]))
        assert torch.equal(nms(pair, pair_scores, 0.49), torch.tensor([0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_nms_loop_matches_fast_and_torchvision(seed, iou_threshold):
    gen = torch.Generator().manual_seed(seed)
    # Crowded: 40 boxes jittered around 5 centres, so IoUs spread over 0..1 and suppression chains.
    centres = random_boxes(gen, 5, extent=25, max_size=12)
    boxes = centres.repeat(8, 1) + torch.randn(40, 4, generator=gen) * 1.5
    scores = torch.randperm(40, generator=gen).float() / 40  # distinct: no ties in the order
    kept = reference.nms_loop(boxes, scores, iou_threshold)
    assert kept.dtype == torch.int64 and 0 < len(kept) < len(boxes)
    assert torch.equal(kept, box_ops.nms(boxes, scores, iou_threshold))
    assert torch.equal(kept, tvo.nms(boxes, scores, iou_threshold))


# --- roi_align_loop and roi_pool_loop -------------------------------------------------------------


def make_rois(generator, k=10):
    """``[K, 5]`` rois on a 2-image, 10 x 12 feature map at scale 1/2 (an image of 20 x 24 pixels).

    Random boxes plus: wholly inside, partly outside on each side, wholly outside, smaller than a
    bin, smaller than a cell, zero size.
    """
    special = torch.tensor(
        [
            [2.0, 3.0, 17.0, 15.0],  # inside
            [-6.0, -5.0, 8.0, 7.0],  # partly outside, top left
            [15.0, 12.0, 30.0, 26.0],  # partly outside, bottom right
            [-4.0, 2.0, 1.0, 6.0],  # in the one-cell band left of the map, where reads are clamped
            [40.0, 30.0, 50.0, 44.0],  # wholly outside
            [9.0, 9.0, 10.2, 9.7],  # smaller than one cell
            [6.5, 4.5, 6.5, 4.5],  # zero size
        ]
    )
    boxes = torch.cat([random_boxes(generator, k, extent=22, max_size=18), special])
    batch_index = torch.randint(0, 2, (len(boxes), 1), generator=generator).float()
    return torch.cat([batch_index, boxes], dim=1)


def test_roi_align_loop_golden():
    # On the ramp f(y, x) = 4 y + x (ramp_4x4):
    # 1. Box [0.5, 1, 2.5, 3] (aligned=False), 2 x 2 bins of 1 x 1 cell; the average of a bin's
    #    points on a linear ramp is the value at the bin's centre (y, x) = (1.5 + i, 1.0 + j):
    #    [[4*1.5 + 1, 4*1.5 + 2], [4*2.5 + 1, 4*2.5 + 2]] = [[7, 8], [11, 12]].
    features = ramp_4x4()
    rois = torch.tensor([[0.0, 0.5, 1.0, 2.5, 3.0]])
    expected = torch.tensor([[[[7.0, 8.0], [11.0, 12.0]]]])
    for align in (reference.roi_align_loop, roi_ops.roi_align, tvo.roi_align):
        torch.testing.assert_close(align(features, rois, 2, 1.0, 2, False), expected)
    # 2. Border rules, one bin, one point at the box centre:
    #    box [-1, 2, 0, 3] samples (y, x) = (2.5, -0.5): inside the one-cell band, x is clamped to 0,
    #    so it reads 4 * 2.5 + 0 = 10; box [-2.5, 2, -1.5, 3] samples x = -2 < -1: it reads 0.
    #    aligned=True, box [1, 1, 3, 3] shifts by -0.5 to [0.5, 2.5]^2: its centre (1.5, 1.5) reads 7.5.
    border = torch.tensor([[0.0, -1.0, 2.0, 0.0, 3.0], [0.0, -2.5, 2.0, -1.5, 3.0]])
    expected_border = torch.tensor([10.0, 0.0]).view(2, 1, 1, 1)
    torch.testing.assert_close(reference.roi_align_loop(features, border, 1, 1.0, 1), expected_border)
    inside = torch.tensor([[0.0, 1.0, 1.0, 3.0, 3.0]])
    torch.testing.assert_close(
        reference.roi_align_loop(features, inside, 1, 1.0, 1, aligned=True), torch.tensor([[[[7.5]]]])
    )


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2])
def test_roi_align_loop_matches_fast_and_torchvision(aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(2, 3, 10, 12, generator=gen)
    rois = make_rois(gen)
    args = ((3, 4), 0.5, sampling_ratio, aligned)
    loop = reference.roi_align_loop(features, rois, *args)
    assert loop.shape == (len(rois), 3, 3, 4)
    assert (loop[-3] == 0).all()  # wholly outside reads 0
    assert (loop[-7:-3].abs().sum(dim=(1, 2, 3)) > 0).all()  # inside, partly outside, border band
    torch.testing.assert_close(loop, roi_ops.roi_align(features, rois, *args), atol=1e-5, rtol=0)
    torch.testing.assert_close(loop, tvo.roi_align(features, rois, *args), atol=1e-5, rtol=0)


def test_roi_pool_loop_golden():
    # Box [0.4, 0.5, 2.6, 2.5] on the ramp, 2 x 2 bins. Rounding half away from zero (C's round,
    # not Python's round-half-to-even): x 0.4 -> 0, 2.6 -> 3; y 0.5 -> 1, 2.5 -> 3. So the box is
    # columns 0..3 (4 cells) and rows 1..3 (3 cells). Bins: columns [0, 2), [2, 4); rows
    # [floor(0 * 1.5), ceil(1 * 1.5)) = [0, 2) and [floor(1.5), ceil(3)) = [1, 3) of the box, i.e.
    # image rows {1, 2} and {2, 3}: row 2 is in both. The max of 4 y + x is at each bin's bottom
    # right: (2, 1) -> 9, (2, 3) -> 11, (3, 1) -> 13, (3, 3) -> 15.
    rois = torch.tensor([[0.0, 0.4, 0.5, 2.6, 2.5]])
    expected = torch.tensor([[[[9.0, 11.0], [13.0, 15.0]]]])
    for pool in (reference.roi_pool_loop, roi_ops.roi_pool, tvo.roi_pool):
        torch.testing.assert_close(pool(ramp_4x4(), rois, 2, 1.0), expected)
    # The bin edges are computed in float32, as the C++ kernel does: a box 29 cells wide in 7 bins
    # has bin size 29/7, and 7 * float32(29/7) rounds to exactly 29.0, so the last bin is cells
    # [24, 29) and its max on a 0..31 ramp is 28. (In float64, 7 * (29/7) = 29.000000000000004 and
    # the ceil would reach cell 29.)
    row = torch.arange(32.0).reshape(1, 1, 1, 32)
    wide = torch.tensor([[0.0, 0.0, 0.0, 28.0, 0.0]])
    for pool in (reference.roi_pool_loop, roi_ops.roi_pool, tvo.roi_pool):
        assert pool(row, wide, (1, 7), 1.0)[0, 0, 0, -1] == 28.0
    # A box wholly off the map has only empty bins: 0.
    off = torch.tensor([[0.0, 10.0, 10.0, 12.0, 12.0]])
    assert (reference.roi_pool_loop(ramp_4x4(), off, 2, 1.0) == 0).all()


@pytest.mark.parametrize("output_size", [(3, 4), (7, 7)])
def test_roi_pool_loop_matches_fast_and_torchvision(output_size):
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(2, 3, 10, 12, generator=gen)
    rois = make_rois(gen)
    # Whole-pixel boxes: at scale 1/2 the odd coordinates land on x.5 cells, where rounding half away
    # from zero (not to even) matters.
    rois[:6, 1:] = torch.round(rois[:6, 1:])
    loop = reference.roi_pool_loop(features, rois, output_size, 0.5)
    assert (loop[-3] == 0).all()  # wholly outside: empty bins
    torch.testing.assert_close(loop, roi_ops.roi_pool(features, rois, output_size, 0.5), atol=0, rtol=0)
    torch.testing.assert_close(loop, tvo.roi_pool(features, rois, output_size, 0.5), atol=0, rtol=0)


# --- paste_masks_loop -----------------------------------------------------------------------------


def test_paste_masks_loop_golden():
    # M = 2, padding 1: the padded mask is 4 x 4 and the box grows by 4/2 = 2 about its centre.
    # Box [1.75, 1.75, 3.25, 3.25]: centre 2.5, half-size 0.75 -> 1.5, grown [1, 1, 4, 4]: pixels
    # 1..4, 4 of them, so the 4 x 4 padded mask is copied unresized: the mask lands on pixels 2..3.
    # Box [-0.25, -0.25, 1.25, 1.25]: grown [-1, -1, 2, 2]: pixel -1 (padding) is cut off, the mask
    # lands on pixels 0..1.
    mask = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    masks = mask.expand(2, 1, 2, 2)
    boxes = torch.tensor([[1.75, 1.75, 3.25, 3.25], [-0.25, -0.25, 1.25, 1.25]])
    expected = torch.zeros(2, 1, 6, 6)
    expected[0, 0, 2:4, 2:4] = mask
    expected[1, 0, 0:2, 0:2] = mask
    for paste in (reference.paste_masks_loop, paste_masks, paste_masks_in_image):
        torch.testing.assert_close(paste(masks, boxes, (6, 6)), expected, atol=1e-6, rtol=0)


def test_paste_masks_loop_matches_fast_and_torchvision():
    """Equal to both on boxes that overlap the image (inside, partly outside, tiny, off-grid).

    Documented difference: torchvision's ``paste_mask_in_image`` cannot paste a box that lies wholly
    outside the image (its clipped slices have mismatched sizes; torchvision 0.2x raises a
    RuntimeError). Ours and the loop give an all-zero image there; if torchvision returns, it must
    agree.
    """
    gen = torch.Generator().manual_seed(3)
    boxes = torch.cat(
        [
            random_boxes(gen, 5, extent=30, max_size=20),
            torch.tensor([[-8.0, -6.0, 10.0, 9.0], [25.0, 18.0, 45.0, 33.0], [12.3, 7.6, 12.9, 8.1]]),
        ]
    )
    masks = torch.rand(len(boxes), 1, 7, 7, generator=gen)
    loop = reference.paste_masks_loop(masks, boxes, (28, 36))
    assert (loop.flatten(1) > 0).any(dim=1).all()
    torch.testing.assert_close(loop, paste_masks(masks, boxes, (28, 36)), atol=1e-5, rtol=0)
    torch.testing.assert_close(loop, paste_masks_in_image(masks, boxes, (28, 36)), atol=1e-5, rtol=0)

    outside = torch.tensor([[50.0, 40.0, 60.0, 50.0], [-20.0, -16.0, -8.0, -5.0]])
    loop = reference.paste_masks_loop(masks[:2], outside, (28, 36))
    assert (loop == 0).all()
    assert torch.equal(loop, paste_masks(masks[:2], outside, (28, 36)))
    try:
        theirs = paste_masks_in_image(masks[:2], outside, (28, 36))
    except RuntimeError:
        return
    assert torch.equal(loop, theirs)


# --- match_loop -----------------------------------------------------------------------------------


def from_torchvision(matches: torch.Tensor) -> torch.Tensor:
    """torchvision's codes (-1 below low, -2 between) -> ``BACKGROUND`` / ``IGNORE``."""
    mapped = matches.clone()
    mapped[matches == TorchvisionMatcher.BELOW_LOW_THRESHOLD] = BACKGROUND
    mapped[matches == TorchvisionMatcher.BETWEEN_THRESHOLDS] = IGNORE
    return mapped


def test_match_loop_golden():
    # 2 objects x 5 anchors, high 0.7, low 0.3. Each anchor's best object (first on ties):
    # anchor 0: obj 0 at 0.9 >= 0.7 -> 0; anchor 1: obj 1 at 0.6 -> IGNORE; anchor 2: obj 1 at 0.3
    # (>= low) -> IGNORE; anchor 3: 0.2 (tie, obj 0) -> BACKGROUND; anchor 4: obj 0 at 0.65 -> IGNORE.
    # Low-quality matches: obj 0's best IoU 0.9 is reached by anchor 0 (already 0); obj 1's best 0.6
    # by anchors 1 and 4 (a tie). Each gets *its own* best object back: anchor 1 -> 1, anchor 4 -> 0.
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.2, 0.65], [0.1, 0.6, 0.3, 0.2, 0.6]])
    plain = torch.tensor([0, IGNORE, IGNORE, BACKGROUND, IGNORE])
    low_quality = torch.tensor([0, 1, IGNORE, BACKGROUND, 0])
    assert torch.equal(reference.match_loop(iou, 0.7, 0.3), plain)
    assert torch.equal(reference.match_loop(iou, 0.7, 0.3, allow_low_quality_matches=True), low_quality)
    assert torch.equal(Matcher(0.7, 0.3, True)(iou), low_quality)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("allow_low_quality_matches", [False, True])
@pytest.mark.parametrize("thresholds", [(0.7, 0.3), (0.5, 0.5)])
def test_match_loop_matches_fast_and_torchvision(seed, allow_low_quality_matches, thresholds):
    gen = torch.Generator().manual_seed(seed)
    # Squares of tenths (0, 0.01, ..., 0.81): many ties, within a column and within an object's row.
    # Object 0 overlaps at most 0.405, so only the low-quality rule can give it an anchor.
    iou = (torch.randint(0, 10, (4, 30), generator=gen).float() / 10) ** 2
    iou[0] *= 0.5
    high, low = thresholds
    loop = reference.match_loop(iou, high, low, allow_low_quality_matches)
    assert loop.dtype == torch.int64 and (loop >= 0).any() and (loop == BACKGROUND).any()
    assert (loop == IGNORE).any() == (high > low)
    assert torch.equal(loop, Matcher(high, low, allow_low_quality_matches)(iou))
    theirs = TorchvisionMatcher(high, low, allow_low_quality_matches)(iou)
    assert torch.equal(loop, from_torchvision(theirs))
    if allow_low_quality_matches:  # the rule must have rescued some anchor, or this tests nothing
        assert not torch.equal(loop, reference.match_loop(iou, high, low, False))
