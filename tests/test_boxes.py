"""boxes.py against torchvision.ops, golden values on hand-made boxes, and properties (hypothesis)."""
import math
from unittest import mock

import pytest
import torch
import torchvision.ops as tvo
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from maskrcnn_edu import boxes as B, reference


def random_boxes(n, generator, image_size=100.0, max_size=40.0, min_size=0.5):
    """``[n, 4]`` valid boxes (x1 > x0, y1 > y0) scattered over a square image."""
    top_left = torch.rand(n, 2, generator=generator) * image_size
    size = torch.rand(n, 2, generator=generator) * (max_size - min_size) + min_size
    return torch.cat([top_left, top_left + size], dim=1)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# --- golden values on hand-made boxes ------------------------------------------------------------


def test_area_and_iou_golden():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 4.0, 2.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 7.0]])
    assert B.box_area(b).tolist() == [4.0, 4.0, 4.0, 2.0]
    # overlap 1 of union 7; touching edge: 0; identical: 1; disjoint: 0
    assert B.box_iou(a, b)[0].tolist() == pytest.approx([1 / 7, 0.0, 1.0, 0.0], abs=1e-7)


def test_box_coder_golden():
    coder = B.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    box = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), size 20 x 20
    expected = [10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]
    assert coder.encode(box, anchor)[0].tolist() == pytest.approx(expected)
    assert coder.decode(coder.encode(box, anchor), anchor)[0].tolist() == pytest.approx(box[0].tolist())


def test_box_coder_clamps_growth():
    coder = B.BoxCoder()
    anchor = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = coder.decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), anchor)
    assert (huge[0, 2] - huge[0, 0]).item() == pytest.approx(1000.0, rel=1e-5)  # 16 * 1000/16


def test_nms_golden():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box 3 (best) suppresses box 0 (IoU 0.9) and box 1 (IoU 72/118 = 0.61); box 2 is far away.
    assert B.nms(boxes, scores, 0.5).tolist() == [3, 2]
    # at 0.95 nothing overlaps enough
    assert B.nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]


def test_nms_chain_needs_the_greedy_order():
    # a suppresses b; b would suppress c, but b is gone, so c stays: a naive "suppress by every
    # better box" would drop c.
    boxes = torch.tensor([[0.0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]])
    scores = torch.tensor([3.0, 2.0, 1.0])
    assert B.nms(boxes, scores, 0.5).tolist() == [0, 2]


def test_masks_to_boxes_golden():
    masks = torch.zeros(3, 5, 6, dtype=torch.uint8)
    masks[0, 1:3, 2:5] = 1
    masks[1, 4, 0] = 1
    expected = [[2.0, 1.0, 4.0, 2.0], [0.0, 4.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]]  # last one empty
    assert B.masks_to_boxes(masks).tolist() == expected


# --- the same numbers as torchvision.ops -----------------------------------------------------------


def test_area_iou_match_torchvision(gen):
    a, b = random_boxes(50, gen), random_boxes(70, gen)
    torch.testing.assert_close(B.box_area(a), tvo.box_area(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(B.box_iou(a, b), tvo.box_iou(a, b), atol=1e-5, rtol=0)


def test_box_coder_matches_torchvision(gen):
    weights = (10.0, 10.0, 5.0, 5.0)
    ours, theirs = B.BoxCoder(weights), TorchvisionBoxCoder(weights)
    anchors, targets = random_boxes(64, gen), random_boxes(64, gen)
    torch.testing.assert_close(ours.encode(targets, anchors), theirs.encode_single(targets, anchors),
                               atol=1e-5, rtol=0)
    deltas = torch.randn(64, 3 * 4, generator=gen) * 2  # three classes, some dw/dh beyond the clamp
    deltas[0, 2] = 50.0
    expected = theirs.decode_single(deltas, anchors).reshape(64, 3, 4)
    decoded = ours.decode(deltas.reshape(64, 3, 4), anchors[:, None, :])
    torch.testing.assert_close(decoded, expected, atol=1e-4, rtol=1e-6)


def test_clip_and_remove_small_match_torchvision(gen):
    boxes = random_boxes(100, gen, image_size=120.0) - 10
    torch.testing.assert_close(B.clip_boxes_to_image(boxes, (90, 70)),
                               tvo.clip_boxes_to_image(boxes, (90, 70)))
    assert torch.equal(B.remove_small_boxes(boxes, 15.0), tvo.remove_small_boxes(boxes, 15.0))


@pytest.mark.parametrize("n", [0, 1, 7, 500, 3000])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_indices_equal_torchvision(n, threshold, gen):
    boxes = random_boxes(n, gen, image_size=300.0, max_size=80.0)
    scores = torch.randperm(n, generator=gen).float() / max(n, 1)  # distinct: no ties
    assert torch.equal(B.nms(boxes, scores, threshold), tvo.nms(boxes, scores, threshold))


@pytest.mark.parametrize("n", [0, 1, 7, 200, 300, 301, 400, 3000])  # joint NMS up to 300, then per category
def test_batched_nms_indices_equal_torchvision(n, gen):
    boxes = random_boxes(n, gen, image_size=200.0, max_size=60.0)
    scores = torch.randperm(n, generator=gen).float()
    categories = torch.randint(0, 5, (n,), generator=gen)
    assert torch.equal(B.batched_nms(boxes, scores, categories, 0.5),
                       tvo.batched_nms(boxes, scores, categories, 0.5))


@pytest.mark.parametrize("tied", [False, True])  # tied: 9 distinct scores, as low-precision logits give
def test_batched_nms_joint_and_per_category_keep_the_same_boxes(gen, monkeypatch, tied):
    """Both ways keep the same boxes, each best first, and each equals torchvision's way of the same
    name to the index, order of tied scores included (torchvision's two ways order ties differently:
    its per-category way sorts the survivors with a sort that is not stable)."""
    from torchvision.ops.boxes import _batched_nms_coordinate_trick, _batched_nms_vanilla

    boxes = random_boxes(900, gen, image_size=200.0, max_size=60.0)
    scores = torch.randperm(900, generator=gen).float()
    if tied:
        scores = (scores / 100).round()
    categories = torch.randint(0, 5, (900,), generator=gen)
    monkeypatch.setattr(B, "MAX_JOINT_NMS", 10**9)  # one [900, 900] matrix
    joint = B.batched_nms(boxes, scores, categories, 0.5)
    monkeypatch.setattr(B, "MAX_JOINT_NMS", 0)  # one matrix per category
    per_category = B.batched_nms(boxes, scores, categories, 0.5)
    assert set(joint.tolist()) == set(per_category.tolist()) and 0 < len(joint) < 900
    for kept in (joint, per_category):
        assert bool((scores[kept][:-1] >= scores[kept][1:]).all())
    assert torch.equal(joint, _batched_nms_coordinate_trick(boxes, scores, categories, 0.5))
    assert torch.equal(per_category, _batched_nms_vanilla(boxes, scores, categories, 0.5))


@pytest.mark.parametrize("n", [200, 900])  # the joint NMS (offsets) and one NMS per category
def test_batched_nms_on_bfloat16_boxes_keeps_what_their_float32_values_keep(n, gen):
    # Under autocast the RPN's boxes are bfloat16. Shifted by the category offsets they would be
    # rounded to multiples of 4 or 8 pixels, and an IoU in bfloat16 is off in its third digit.
    boxes = random_boxes(n, gen, image_size=200.0, max_size=60.0).bfloat16()
    scores = torch.randperm(n, generator=gen).float()
    categories = torch.randint(0, 5, (n,), generator=gen)
    expected = tvo.batched_nms(boxes.float(), scores, categories, 0.7)
    assert torch.equal(B.batched_nms(boxes, scores, categories, 0.7), expected)
    assert torch.equal(B.nms(boxes, scores, 0.7), tvo.nms(boxes.float(), scores, 0.7))


def test_masks_to_boxes_matches_torchvision(gen):
    masks = torch.rand(20, 30, 40, generator=gen) > 0.97
    masks[:, 0, 0] = False
    masks[3, 10:12, 5:7] = True
    nonempty = masks.flatten(1).any(1)
    torch.testing.assert_close(B.masks_to_boxes(masks[nonempty]), tvo.masks_to_boxes(masks[nonempty]))


# --- defects found by running torchvision's and detectron2's test cases ---------------------------------


def test_nms_breaks_score_ties_by_index_like_torchvision():
    # torchvision sorts the scores stably: among equal scores the lower index is visited (and kept) first.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(17, 1)
    scores = torch.ones(17)
    assert B.nms(boxes, scores, 0.5).tolist() == tvo.nms(boxes, scores, 0.5).tolist() == [0]
    categories = torch.zeros(17, dtype=torch.int64)
    assert B.batched_nms(boxes, scores, categories, 0.5).tolist() == [0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_on_low_precision_scores_keeps_what_torchvision_keeps(dtype, gen):
    # Under autocast the scores are float16/bfloat16, and many of 300 of them tie: the tie order decides
    # which of two overlapping boxes stays (an unstable sort changed 8 and 33 of ~172 kept boxes).
    boxes = random_boxes(300, gen, image_size=200.0, max_size=60.0)
    scores = torch.rand(300, generator=gen).to(dtype)
    categories = torch.randint(0, 5, (300,), generator=gen)
    assert len(scores.unique()) < 300  # ties, or the test tests nothing
    wide = scores.float()  # torchvision's CPU kernel takes no float16; the conversion is exact
    assert torch.equal(B.nms(boxes, scores, 0.5), tvo.nms(boxes, wide, 0.5))
    expected = tvo.batched_nms(boxes, wide, categories, 0.5)
    assert torch.equal(B.batched_nms(boxes, scores, categories, 0.5), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_box_iou_does_not_overflow_in_low_precision_like_torchvision(dtype, gen):
    # A 256 x 256 box's area, 65536, is past float16's largest value (65504): the area was inf, the IoU nan.
    for side in (255.0, 256.0, 1000.0):
        box = torch.tensor([[0.0, 0.0, side, side]], dtype=dtype)
        assert B.box_iou(box, box).item() == tvo.box_iou(box, box).item() == 1.0
        assert reference.box_iou_loop(box, box).item() == 1.0
        torch.testing.assert_close(B.box_area(box), tvo.box_area(box), atol=0, rtol=0)
    a, b = (random_boxes(40, gen, image_size=800.0, max_size=400.0).to(dtype) for _ in range(2))
    # torchvision subtracts the edges in 16 bits before it widens: a rounding apart, no more.
    torch.testing.assert_close(B.box_iou(a, b), tvo.box_iou(a, b), atol=2e-3, rtol=0)


@pytest.mark.parametrize("dtype, side", [(torch.uint8, 200), (torch.int8, 100), (torch.int16, 200)])
def test_integer_box_area_and_iou_do_not_overflow_like_torchvision(dtype, side):
    # int8 holds up to 127, uint8 255, int16 32767: the areas (and then the IoUs) wrapped around.
    boxes = torch.tensor([[0, 0, side, side], [0, 0, side // 2, side]], dtype=dtype)
    area = B.box_area(boxes)
    assert area.dtype == torch.int64  # torchvision gives int32; int64 holds any int32 box's area
    assert area.tolist() == tvo.box_area(boxes).tolist() == [side * side, side * side // 2]
    iou = B.box_iou(boxes, boxes)
    torch.testing.assert_close(iou, tvo.box_iou(boxes, boxes), atol=0, rtol=0)  # float32, as torchvision's
    torch.testing.assert_close(iou, reference.box_iou_loop(boxes, boxes), atol=0, rtol=0)
    assert iou[0, 1].item() == 0.5


def nms_per_category_torchvision(boxes, scores, categories, iou_threshold):
    """``tvo.nms`` within each category (torchvision's coordinate trick fails at coordinates <= 0, as ours
    did), merged best first, ties by index -> ``[K]``."""
    kept = [members[tvo.nms(boxes[members], scores[members], iou_threshold)]
            for members in (torch.where(categories == c)[0] for c in categories.unique())]
    kept = torch.cat(kept).sort().values if kept else torch.zeros(0, dtype=torch.int64)
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


@pytest.mark.parametrize("joint", [True, False])
def test_batched_nms_offsets_separate_categories_at_negative_coordinates(monkeypatch, joint):
    # With every coordinate <= 0 an offset of category * (max + 1) moves the boxes by at most 1 pixel.
    monkeypatch.setattr(B, "MAX_JOINT_NMS", 10**9 if joint else 0)
    boxes = torch.tensor([[-10.0, -10.0, 0.0, 0.0], [-10.0, -10.0, 0.0, 0.0]])
    scores, categories = torch.tensor([0.9, 0.8]), torch.tensor([0, 1])
    assert B.batched_nms(boxes, scores, categories, 0.5).tolist() == [0, 1]
    # A box far on the negative side and one on the positive side: offsets (max + 1) overlap too.
    boxes = torch.tensor([[-500.0, -500.0, -400.0, -400.0], [-494.0, -494.0, -394.0, -394.0], [5.0, 5, 9, 9]])
    scores, categories = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 0])
    expected = nms_per_category_torchvision(boxes, scores, categories, 0.5)
    assert B.batched_nms(boxes, scores, categories, 0.5).tolist() == expected.tolist() == [0, 1, 2]


# --- properties ------------------------------------------------------------------------------------

coordinate = st.floats(min_value=-1000, max_value=1000, allow_nan=False, width=32)
extent = st.floats(min_value=0.5, max_value=500, allow_nan=False, width=32)


@st.composite
def box_tensors(draw, max_boxes=6):
    n = draw(st.integers(1, max_boxes))
    corner_and_size = st.tuples(coordinate, coordinate, extent, extent)
    corners_and_sizes = draw(st.lists(corner_and_size, min_size=n, max_size=n))
    rows = [[x, y, x + w, y + h] for x, y, w, h in corners_and_sizes]
    return torch.tensor(rows, dtype=torch.float64)


@settings(max_examples=200, deadline=None)
@given(box_tensors(), box_tensors())
def test_iou_symmetric_and_bounded(a, b):
    iou = B.box_iou(a, b)
    assert torch.equal(iou, B.box_iou(b, a).T)
    assert ((iou >= 0) & (iou <= 1 + 1e-12)).all()


@settings(max_examples=200, deadline=None)
@given(box_tensors())
def test_iou_with_itself_is_one(a):
    torch.testing.assert_close(torch.diagonal(B.box_iou(a, a)), torch.ones(len(a), dtype=a.dtype))


@settings(max_examples=200, deadline=None)
@given(box_tensors(), box_tensors(), st.tuples(*[st.floats(0.5, 20)] * 4))
def test_decode_inverts_encode(boxes, anchors, weights):
    n = min(len(boxes), len(anchors))
    boxes, anchors = boxes[:n], anchors[:n]
    coder = B.BoxCoder(weights, scale_clamp=math.inf)
    round_trip = coder.decode(coder.encode(boxes, anchors), anchors)
    torch.testing.assert_close(round_trip, boxes, atol=1e-6, rtol=1e-9)


@settings(max_examples=100, deadline=None)
@given(box_tensors(max_boxes=30), st.floats(0.05, 0.95))
def test_nms_keeps_no_overlapping_pair(boxes, threshold):
    scores = torch.arange(len(boxes), dtype=boxes.dtype)
    keep = B.nms(boxes, scores, threshold)
    kept_iou = B.box_iou(boxes[keep], boxes[keep]).fill_diagonal_(0)
    assert (kept_iou <= threshold).all()
    assert (scores[keep].diff() < 0).all()  # best first


# Integer corners: an offset then moves a box exactly, so the joint way's IoUs are the per-category
# way's to the last bit, and the two must keep the very same boxes (no threshold ties to blur it).
corner, side = st.integers(-300, 30), st.integers(1, 120)
integer_box = st.tuples(corner, corner, side, side)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(integer_box, st.integers(0, 3), st.integers(0, 4)), min_size=1, max_size=12),
       st.sampled_from([0.1, 0.3, 0.5, 0.7]))
def test_batched_nms_joint_path_equals_per_category_path_for_any_coordinates(rows, threshold):
    boxes = torch.tensor([[x, y, x + w, y + h] for (x, y, w, h), _, _ in rows], dtype=torch.float32)
    categories = torch.tensor([c for _, c, _ in rows])
    scores = torch.tensor([s for _, _, s in rows], dtype=torch.float32)  # 5 values: many ties
    with mock.patch.object(B, "MAX_JOINT_NMS", 10**9):
        joint = B.batched_nms(boxes, scores, categories, threshold)
    with mock.patch.object(B, "MAX_JOINT_NMS", 0):
        per_category = B.batched_nms(boxes, scores, categories, threshold)
    assert torch.equal(joint, per_category)
    # torchvision compares the float32 IoU with the threshold as a double: an IoU of 1/10 is "> 0.1" there,
    # not here. Away from such ties the kept boxes are the same.
    assume(((B.box_iou(boxes, boxes) - threshold).abs() > 1e-6).all())
    assert torch.equal(joint, nms_per_category_torchvision(boxes, scores, categories, threshold))


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(3, 5), torch.zeros(2, 3, 4)])
def test_wrong_box_shape_names_the_argument(bad):
    with pytest.raises(ValueError, match=r"boxes1 must be a \[N, 4\].*got shape"):
        B.box_iou(bad, torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"boxes must be a \[N, 4\]"):
        B.nms(bad, torch.zeros(len(bad)), 0.5)


def test_nms_score_count_mismatch():
    with pytest.raises(ValueError, match=r"scores must be \[N\] with N = 2"):
        B.nms(torch.zeros(2, 4), torch.zeros(3), 0.5)


def test_masks_to_boxes_wants_3d():
    with pytest.raises(ValueError, match=r"masks must be \[N, H, W\], got shape \(5, 5\)"):
        B.masks_to_boxes(torch.zeros(5, 5))
