"""Chapter 03: the recall of a set of boxes, the RPN's NMS redone from a trace, and the explorer.

Widget tests set a control's ``.value``, as a reader's mouse would, and check ``explorer.state``.
"""
import math
from pathlib import Path

import pytest
import torch

from maskrcnn_edu import MaskRCNN
from maskrcnn_edu.boxes import nms
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.explorers.rpn import (
    SWEEP_THRESHOLDS, NMSSweep, objects_found, proposals_view, rpn_explorer, rpn_recall,
)

MODEL = Path(__file__).resolve().parents[1] / "data" / "shapes_model" / "model.pt"
NUM_IMAGES = 4


# Recall on hand-made boxes ----------------------------------------------------------------------


def test_recall_hand_made():
    objects = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0]])
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],    # object 0 exactly: IoU 1
        [20.0, 20.0, 30.0, 35.0],  # object 1: 100 / 150 = 0.667
        [50.0, 50.0, 60.0, 55.0],  # object 2: 50 / 100 = 0.5, exactly at the loose threshold
        [100.0, 100.0, 110.0, 110.0],  # nothing
    ])
    assert objects_found(boxes, objects, 0.5).tolist() == [True, True, True]  # IoU >= t counts
    assert objects_found(boxes, objects, 0.7).tolist() == [True, False, False]
    assert rpn_recall(boxes, objects) == {0.5: 1.0, 0.7: pytest.approx(1 / 3)}
    # Two boxes on one object do not make up for a missed one.
    twice = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    assert rpn_recall(twice, objects, (0.5,)) == {0.5: pytest.approx(1 / 3)}


def test_recall_pools_images_and_keeps_them_apart():
    objects = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
               torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])]
    # Image 0's box fits image 1's first object too, but boxes only find objects of their own image.
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.zeros(0, 4)]
    assert rpn_recall(boxes, objects, (0.5,)) == {0.5: pytest.approx(1 / 3)}  # 1 of 3 objects, not mean(1, 0)
    boxes = [torch.zeros(0, 4), torch.tensor([[20.0, 0.0, 30.0, 10.0]])]
    assert rpn_recall(boxes, objects, (0.5,)) == {0.5: pytest.approx(1 / 3)}
    assert math.isnan(rpn_recall([torch.zeros(0, 4)], [torch.zeros(0, 4)], (0.5,))[0.5])


def test_recall_rejects_bad_input():
    with pytest.raises(ValueError, match="one entry per image"):
        rpn_recall([torch.zeros(0, 4)], [torch.zeros(0, 4), torch.zeros(0, 4)])
    with pytest.raises(ValueError, match="boxes must be"):
        objects_found(torch.zeros(3, 5), torch.zeros(1, 4), 0.5)


def test_greedy_nms_is_not_monotone_in_the_threshold():
    # Why the explorer test below checks "a lower threshold never keeps more boxes" on its images
    # only: greedy NMS does not promise it. At 0.5, B survives A (IoU 1/3) and suppresses C and D
    # (IoU 7/13 each); at 0.3, A suppresses B, and C and D, which overlap A and each other little, both stay.
    boxes = torch.tensor([
        [0.0, 5.0, 10.0, 15.0],  # A, best
        [0.0, 0.0, 10.0, 10.0],  # B
        [-3.0, 0.0, 7.0, 10.0],  # C
        [3.0, 0.0, 13.0, 10.0],  # D
    ])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.3).tolist() == [0, 2, 3]


# The NMS sweep on the shipped model's traces ------------------------------------------------------


@pytest.fixture(scope="module")
def traced():
    model = MaskRCNN.from_checkpoint(MODEL)
    dataset = ShapesDataset(NUM_IMAGES, seed=3)
    traces, objects = [], []
    for image, target in dataset:
        traces.append(model.trace(image))
        objects.append(target["boxes"])
    return model, traces, objects


def test_sweep_redoes_the_rpns_own_selection(traced):
    model, traces, objects = traced
    sweep = NMSSweep(traces, objects)
    config = model.config
    for k, trace in enumerate(traces):
        keep = sweep.proposals(k, config.rpn_nms_thresh, config.rpn_post_nms_top_n_test)
        assert torch.equal(keep, trace.rpn.nms_keep[0])
        # before the top-k too: what NMS kept is what the RPN recorded as NMS's survivors
        assert torch.equal(sweep.survivors(k, config.rpn_nms_thresh), trace.rpn.nms_survivors[0])
        assert torch.equal(sweep.candidates[k].boxes[keep], trace.rpn.proposals[0])
    # ... so its recall is the recall of the trace's proposals.
    proposals = [t.rpn.proposals[0] for t in traces]
    recall = sweep.recall(config.rpn_nms_thresh, config.rpn_post_nms_top_n_test)
    assert recall == rpn_recall(proposals, objects)


def test_sweep_takes_multi_image_traces(traced):
    model, traces, objects = traced
    images = [ShapesDataset(NUM_IMAGES, seed=3)[k][0] for k in range(2)]
    batch = model.trace(images)  # one trace of two images
    sweep = NMSSweep([batch], objects[:2])
    assert len(sweep) == 2
    assert torch.equal(sweep.proposals(1, 0.7, 250), batch.rpn.nms_keep[1])
    with pytest.raises(ValueError, match="one \\[K, 4\\] tensor per image"):
        NMSSweep([batch], objects)


@pytest.fixture(scope="module")
def sweep(traced):
    _, traces, objects = traced
    return NMSSweep(traces, objects)


@pytest.fixture(scope="module")
def explorer(sweep):
    return rpn_explorer(sweep, draw=False)


def test_first_view_is_the_models_setting(explorer, traced):
    _, traces, objects = traced
    state = explorer.state
    assert (state.nms_threshold, state.post_nms_top_n, state.image) == (0.7, 250, 0)
    assert state.num_proposals == [len(t.rpn.proposals[0]) for t in traces]
    assert state.num_candidates == [len(t.rpn.pre_nms_boxes[0]) for t in traces]
    assert state.recall == rpn_recall([t.rpn.proposals[0] for t in traces], objects)
    assert f"{state.recall[0.7]:.3f} at IoU 0.7" in state.caption
    assert f"{state.num_survivors[0]} of its {state.num_candidates[0]} candidates" in state.caption


def test_lower_threshold_never_keeps_more_here(explorer):
    # Not a law of greedy NMS (see the hand-made case above), but true of these images at every step.
    explorer.controls["post_nms_top_n"].value = 1000  # no cap: the count is NMS's alone
    previous = None
    for threshold in reversed(SWEEP_THRESHOLDS):
        explorer.controls["nms_threshold"].value = threshold
        state = explorer.state
        assert state.num_proposals == state.num_survivors  # 1000 is more than any image's candidates
        if previous is not None:
            assert all(now <= before for now, before in zip(state.num_proposals, previous))
        previous = state.num_proposals
    explorer.controls["nms_threshold"].value = 1.0  # suppress only above IoU 1: nothing
    assert explorer.state.num_survivors == explorer.state.num_candidates


def test_top_k_caps_the_count_and_never_lowers_recall(explorer):
    explorer.controls["nms_threshold"].value = 0.7
    previous = None
    for top_n in explorer.controls["post_nms_top_n"].options:
        explorer.controls["post_nms_top_n"].value = top_n
        state = explorer.state
        pairs = zip(state.num_proposals, state.num_survivors)
        assert all(count == min(top_n, survivors) for count, survivors in pairs)
        if previous is not None:  # the best k are a subset of the best k' > k
            assert all(state.recall[t] >= previous[t] for t in state.recall)
        previous = state.recall
    assert state.sweep["proposals"][SWEEP_THRESHOLDS.index(0.7)] == pytest.approx(state.mean_proposals)


def test_image_control_picks_the_image_shown(explorer, sweep):
    explorer.controls["image"].value = 2
    state = explorer.state
    assert state.image == 2 and state.caption.count("image 2 keeps") == 1
    keep = sweep.proposals(2, state.nms_threshold, state.post_nms_top_n)
    assert torch.equal(state.best_iou, sweep.candidates[2].iou[:, keep].max(dim=1).values)
    with pytest.raises(ValueError, match="image must be in"):
        proposals_view(sweep, image=NUM_IMAGES)


def test_explorer_draws(traced):
    _, traces, objects = traced
    drawn = rpn_explorer(NMSSweep(traces[:2], objects[:2]), draw=True, nms_threshold=0.5, post_nms_top_n=50,
                         image=1)
    assert drawn.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn.state.figure.get_size_inches()[0] <= 12  # fits a 960 px column at 80 dpi
    assert "NMS threshold 0.50, post-NMS top 50" in drawn.state.caption
