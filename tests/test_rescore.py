"""``rescore_by_mask_overlap``: a detection loses the share of its mask that better ones already cover."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskrcnn_edu import MaskRCNN
from maskrcnn_edu.config import Config, shapes
from maskrcnn_edu.reference import rescore_by_mask_overlap_loop
from maskrcnn_edu.masks import rescore_by_mask_overlap
from maskrcnn_edu.transform import postprocess


def _detection(masks: torch.Tensor, scores) -> dict:
    """Detections with binary ``masks [D, H, W]`` (as probabilities 0 / 1) and their ``scores``."""
    d = len(masks)
    return {"boxes": torch.arange(4 * d, dtype=torch.float32).reshape(d, 4), "labels": torch.arange(1, d + 1),
            "scores": torch.tensor(scores, dtype=torch.float32), "masks": masks[:, None].float()}


def test_golden_half_covered_loses_half_and_the_order_follows_the_new_scores():
    masks = torch.zeros(4, 4, 6)
    masks[0, :, 0:2] = 1  # 8 pixels
    masks[1, :, 1:3] = 1  # 8 pixels, 4 of them (column 1) in mask 0: half covered
    masks[2, :2, 4:6] = 1  # 4 pixels, apart from the others
    masks[3, :, 0:3] = 1  # 12 pixels, all inside masks 0 and 1
    out, order = rescore_by_mask_overlap(_detection(masks, [0.9, 0.8, 0.5, 0.45]))
    assert order.tolist() == [0, 2, 1, 3]  # each output detection's index in the input
    # 0.9 (first, kept), 0.8 * (1 - 4/8) = 0.4, 0.5 (no overlap), 0.45 * (1 - 12/12) = 0
    assert torch.allclose(out["scores"], torch.tensor([0.9, 0.5, 0.4, 0.0]))
    assert out["labels"].tolist() == [1, 3, 2, 4]  # every field re-sorted with its score
    assert torch.equal(out["boxes"][1], torch.tensor([8.0, 9.0, 10.0, 11.0]))
    assert torch.equal(out["masks"][1], masks[2][None])


def test_overlap_with_a_worse_detection_costs_nothing_and_an_empty_mask_keeps_its_score():
    masks = torch.zeros(3, 5, 5)
    masks[0, 1:4, 1:4] = 1
    masks[1] = 1  # the whole image: it covers mask 0, but it scores lower, so mask 0 is untouched
    out, _ = rescore_by_mask_overlap(_detection(masks, [0.7, 0.6, 0.3]))  # mask 2 is empty
    assert torch.allclose(out["scores"], torch.tensor([0.7, 0.6 * (1 - 9 / 25), 0.3]))


def test_no_detections_come_back_as_they_went():
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "scores": torch.zeros(0),
             "masks": torch.zeros(0, 1, 8, 8)}
    out, order = rescore_by_mask_overlap(empty)
    assert order.shape == (0,) and order.dtype == torch.int64
    assert all(torch.equal(out[k], empty[k]) for k in empty)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_equals_the_loop_and_only_ever_lowers_scores(count, seed):
    generator = torch.Generator().manual_seed(seed)
    probabilities = torch.rand(count, 1, 9, 7, generator=generator) ** 2  # some empty-ish masks
    scores = torch.rand(count, generator=generator).sort(descending=True).values
    detection = {"boxes": torch.rand(count, 4, generator=generator), "labels": torch.arange(count),
                 "scores": scores, "masks": probabilities}
    out, order = rescore_by_mask_overlap(detection)
    expected = rescore_by_mask_overlap_loop(scores, probabilities)
    assert torch.equal(order, out["labels"])  # labels = input positions here
    assert torch.allclose(out["scores"], expected[order], atol=1e-6)
    assert (out["scores"][:-1] >= out["scores"][1:]).all()  # sorted best first
    assert (expected <= scores + 1e-7).all() and (expected >= 0).all()
    assert expected[0] == scores[0]  # the best detection is never lowered
    assert sorted(out["labels"].tolist()) == list(range(count))  # none removed


def test_disjoint_masks_keep_every_score():
    masks = torch.zeros(5, 10, 10)
    for k in range(5):
        masks[k, 2 * k : 2 * k + 2] = 1  # five separate bands
    scores = [0.9, 0.7, 0.5, 0.3, 0.1]
    out, order = rescore_by_mask_overlap(_detection(masks, scores))
    assert torch.equal(out["scores"], torch.tensor(scores)) and order.tolist() == list(range(5))


def test_the_option_is_off_in_both_presets_and_in_old_checkpoints():
    assert Config().mask_overlap_rescore is False  # torchvision's model has no such step
    assert shapes().mask_overlap_rescore is False  # nor does the shipped model: appendix A measures it
    old = shapes().to_dict()
    del old["mask_overlap_rescore"]  # a checkpoint written before the option existed
    assert Config.from_dict(old).mask_overlap_rescore is False


def test_the_model_applies_it_to_its_pasted_detections():
    torch.manual_seed(0)
    model = MaskRCNN(shapes(box_score_thresh=0.0, mask_overlap_rescore=True)).eval()  # untrained: overlaps
    images = [torch.rand(3, 128, 128), torch.rand(3, 96, 120)]
    with torch.no_grad():
        on = model(images)
    model.config = model.config.replace(mask_overlap_rescore=False)
    trace = model.trace(images)  # the heads' detections in NMS's order
    plain = postprocess(trace.heads.detections, trace.batch.image_sizes, trace.original_sizes,
                        model.config.aligned)
    changed = reordered = 0
    for got, before in zip(on, plain):
        expected, order = rescore_by_mask_overlap(before)
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        changed += int((got["scores"] != before["scores"]).any())
        reordered += int((order != torch.arange(len(order))).any())
    assert changed and reordered  # the untrained model's masks do overlap: the step did something
    with torch.no_grad():
        off = model(images)
    assert all(torch.equal(o[k], p[k]) for o, p in zip(off, plain) for k in p)


def test_the_traces_heads_follow_the_rescored_order():
    # Detection k of trace.detections must be detection k of trace.heads (its RoI, its mask logits),
    # as the drawings and widgets read them side by side.
    torch.manual_seed(0)
    model = MaskRCNN(shapes(box_score_thresh=0.0, mask_overlap_rescore=True)).eval()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    trace = model.trace(images)
    model.config = model.config.replace(mask_overlap_rescore=False)
    plain = model.trace(images)
    for i in range(2):
        final, heads = trace.detections[i], trace.heads.detections[i]
        _, order = rescore_by_mask_overlap(postprocess([plain.heads.detections[i]], [(128, 128)], [(128,
                                                                                                    128)],
                                                       model.config.aligned)[0])
        assert (order != torch.arange(len(order))).any()  # the order did change
        assert torch.equal(final["labels"], heads["labels"])
        assert torch.equal(final["boxes"], heads["boxes"])  # 128 x 128: no resize between them
        # NMS's scores, reordered
        assert torch.equal(heads["scores"], plain.heads.detections[i]["scores"][order])
        assert torch.equal(trace.heads.detection_rois[i], plain.heads.detection_rois[i][order])
        assert torch.allclose(torch.sigmoid(trace.heads.detection_mask_logits[i]), heads["masks"][:, 0])
    counts = [len(d["scores"]) for d in plain.heads.detections]
    rows = torch.arange(sum(counts))
    own = [rows[:counts[0]], rows[counts[0]:]]
    first, second = (rescore_by_mask_overlap(d)[1] for d in postprocess(plain.heads.detections, [(128,
                                                                                                  128)] * 2,
                                                                          [(128, 128)] * 2,
                                                                          model.config.aligned))
    expected = plain.heads.mask_logits[torch.cat([own[0][first], own[1][second]])]
    assert torch.equal(trace.heads.mask_logits, expected)
