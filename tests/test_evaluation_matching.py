"""``evaluation.matching``: the one matching of detections to objects, against plain loops and by hand.

The two reference loops below are the matchings the package had before it had one: the greedy
pass of the drawings and of chapter 10's explorer (detections best score first, each taking the
free object of its class it overlaps most) and the confusion matrix's pairing (the largest IoU
first, any class). ``match_by_iou`` must give what they give, ties included, on seeded random
scenes; hand-made cases pin what each rule means.
"""
import numpy as np
import pytest
import torch

import maskrcnn_edu.evaluation as evaluation
from maskrcnn_edu.boxes import box_iou
from maskrcnn_edu.evaluation import analyses, ap, coco, matching
from maskrcnn_edu.evaluation.matching import (box_ious, coco_ious, mask_ious, match_boxes, match_by_iou,
                                              match_masks)

# --- the reference loops ----------------------------------------------------------------------------


def greedy_by_score(ious, gt_labels, pred_labels, pred_scores, iou_threshold):
    """Detections best score first (stable); each takes the free object of its class of largest IoU
    (the first of equals) if that IoU is ``>= iou_threshold``. -> pairs, ious, missed, false positives."""
    candidates = np.where(gt_labels[:, None] == pred_labels[None, :], ious, -1.0)  # [G, D]
    taken = np.zeros(len(gt_labels), dtype=bool)
    pairs, pair_ious = [], []
    for d in np.argsort(-pred_scores, kind="stable"):
        column = np.where(taken, -1.0, candidates[:, d])
        if len(column) and column.max() >= iou_threshold:
            g = int(column.argmax())
            taken[g] = True
            pairs.append([g, int(d)])
            pair_ious.append(ious[g, d])
    matched = {d for _, d in pairs}
    false_positives = [d for d in range(len(pred_labels)) if d not in matched]
    return pairs, pair_ious, np.flatnonzero(~taken).tolist(), false_positives


def pairs_by_overlap(ious_dg, iou_threshold):
    """``ious [D, G]``: all pairs ``>= iou_threshold``, largest first (stable over detection, then
    object), each taken if both are free -> ``detection_of [G]``, -1 for none."""
    detection_of = np.full(ious_dg.shape[1], -1)
    detection_free = np.ones(ious_dg.shape[0], dtype=bool)
    ds, gs = np.nonzero(ious_dg >= iou_threshold)
    for k in np.argsort(-ious_dg[ds, gs], kind="mergesort"):
        if detection_free[ds[k]] and detection_of[gs[k]] < 0:
            detection_of[gs[k]], detection_free[ds[k]] = ds[k], False
    return detection_of


def random_scene(rng, coarse: bool):
    """Up to 8 objects and 11 detections, near the objects or anywhere; ``coarse``: rounded boxes and
    scores, so that IoUs and scores tie."""
    num_objects, num_detections = int(rng.integers(0, 9)), int(rng.integers(0, 12))
    corner = rng.uniform(0, 40, size=(num_objects, 2))
    objects = np.concatenate([corner, corner + rng.uniform(2, 20, size=(num_objects, 2))], axis=1)
    near = (objects[rng.integers(0, num_objects, size=num_detections)] if num_objects
            else np.zeros((num_detections, 4)))
    detections = near + rng.normal(0, 3, size=(num_detections, 4))
    detections[:, 2:] = np.maximum(detections[:, 2:], detections[:, :2] + 1)
    if coarse:
        objects, detections = np.round(objects), np.round(detections)
    object_labels, labels = rng.integers(1, 4, size=num_objects), rng.integers(1, 4, size=num_detections)
    return objects, object_labels, detections, labels, np.round(rng.random(num_detections), 1)


@pytest.mark.parametrize("seed", range(200))
def test_match_by_iou_is_the_two_reference_loops(seed):
    rng = np.random.default_rng(seed)
    gt_boxes, gt_labels, boxes, labels, scores = random_scene(rng, coarse=seed % 2 == 0)
    for iou_threshold in (0.3, 0.5, 0.7):
        for ious in (box_ious(gt_boxes, boxes), np.round(box_ious(gt_boxes, boxes), 1)):  # rounded: ties
            pairs, pair_ious, missed, false_positives = greedy_by_score(ious, gt_labels, labels, scores,
                                                                        iou_threshold)
            matches = match_by_iou(ious, gt_labels, labels, scores, iou_threshold)
            assert matches.pairs.tolist() == pairs and matches.ious.tolist() == pair_ious
            assert matches.missed.tolist() == missed and matches.false_positives.tolist() == false_positives
            overlap = match_by_iou(ious, iou_threshold=iou_threshold, same_class=False, first="overlap")
            detection_of = pairs_by_overlap(ious.T, iou_threshold)
            assert overlap.detection_of.tolist() == detection_of.tolist()
            unpaired = np.setdiff1d(np.arange(len(labels)), detection_of)
            assert overlap.false_positives.tolist() == unpaired.tolist()


# --- by hand ----------------------------------------------------------------------------------------------


def hand_made_scene():
    """Three objects, five detections (the scene of ``tests/test_visualize.py``)."""
    gt_boxes = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    gt_labels = torch.tensor([1, 1, 2])
    boxes = torch.tensor([[0.0, 0, 10, 8], [0, 0, 10, 6], [40, 0, 50, 10], [40, 0, 50, 4], [21, 0, 30, 10]])
    labels = torch.tensor([1, 1, 1, 2, 1])
    scores = torch.tensor([0.9, 0.95, 0.8, 0.7, 0.3])
    return gt_boxes, gt_labels, boxes, labels, scores


def test_match_boxes_by_hand():
    matches = match_boxes(*hand_made_scene(), iou_threshold=0.5)
    # detection 1 (score 0.95, IoU 0.6) takes object 0 before detection 0 (0.9, IoU 0.8): by score;
    # detection 4 (IoU 0.9) takes object 1; detection 2 covers object 2 exactly but is the wrong
    # class; detection 3 is the right class but IoU 0.4 < 0.5.
    assert matches.pairs.tolist() == [[0, 1], [1, 4]]
    np.testing.assert_allclose(matches.ious, [0.6, 0.9])
    assert matches.missed.tolist() == [2] and matches.false_positives.tolist() == [0, 2, 3]
    assert matches.detection_of.tolist() == [1, 4, -1]
    loose = match_boxes(*hand_made_scene(), iou_threshold=0.4)  # detection 3 now finds object 2
    assert loose.pairs.tolist() == [[0, 1], [2, 3], [1, 4]] and loose.false_positives.tolist() == [0, 2]
    assert len(loose.missed) == 0
    # the same scene with the largest overlap first, any class: detection 2 (IoU 1) takes object 2,
    # detection 4 (0.9) object 1, detection 0 (0.8) object 0
    gt_boxes, _, boxes, _, _ = hand_made_scene()
    overlap = match_by_iou(box_ious(gt_boxes, boxes), iou_threshold=0.5, same_class=False, first="overlap")
    assert overlap.pairs.tolist() == [[2, 2], [1, 4], [0, 0]] and overlap.false_positives.tolist() == [1, 3]


def test_match_masks_by_hand():
    objects = np.zeros((2, 4, 4), bool)
    objects[0, :2, :2] = True  # 4 pixels
    objects[1, 2:, 2:] = True  # 4 pixels
    found = np.zeros((3, 4, 4), bool)
    found[0, :2, :3] = True    # object 0 plus 2 pixels: IoU 4/6
    found[1, :2, :2] = True    # exactly object 0, but scored lower: a duplicate
    found[2, 2:, 2:] = True    # exactly object 1, but of another class
    assert np.allclose(mask_ious(objects, found), [[4 / 6, 1.0, 0.0], [0.0, 0.0, 1.0]])
    matches = match_masks(objects, [1, 2], found, [1, 1, 3], [0.9, 0.8, 0.7])
    assert matches.pairs.tolist() == [[0, 0]]        # the best score takes object 0, though 1 fits better
    assert np.allclose(matches.ious, [4 / 6])
    assert matches.missed.tolist() == [1]             # only a detection of another class covers it
    assert matches.false_positives.tolist() == [1, 2]
    strict = match_masks(objects, [1, 2], found, [1, 1, 3], [0.9, 0.8, 0.7], iou_threshold=0.7)
    assert strict.pairs.tolist() == [[0, 1]]         # at 0.7 the first cannot match; the duplicate can


def test_no_objects_or_no_detections():
    none, some = np.zeros((0, 5, 6), bool), np.ones((2, 5, 6), bool)
    assert mask_ious(none, some).shape == (0, 2) and mask_ious(some, none).shape == (2, 0)
    matches = match_masks(none, [], some, [1, 2], [0.9, 0.8])
    assert matches.pairs.shape == (0, 2) and matches.false_positives.tolist() == [0, 1]
    matches = match_masks(some, [1, 2], none, [], [])
    assert matches.missed.tolist() == [0, 1] and len(matches.false_positives) == 0
    empty = match_boxes(torch.zeros(0, 4), torch.zeros(0), *hand_made_scene()[2:])
    assert len(empty.pairs) == 0 and len(empty.false_positives) == 5 and empty.detection_of.shape == (0,)
    nothing = match_boxes(*hand_made_scene()[:2], torch.zeros(0, 4), torch.zeros(0), torch.zeros(0))
    assert nothing.missed.tolist() == [0, 1, 2] and nothing.detection_of.tolist() == [-1, -1, -1]


def test_ious_of_boxes_masks_and_coco_entries():
    gt_boxes, _, boxes, _, _ = hand_made_scene()
    assert box_ious(gt_boxes, boxes).dtype == np.float64
    np.testing.assert_allclose(box_ious(gt_boxes, boxes), box_iou(gt_boxes.double(), boxes.double()).numpy())
    assert box_ious(gt_boxes, boxes)[0, 1] == 0.6 and box_ious(np.zeros((0, 4)), boxes).shape == (0, 5)
    # pycocotools: [x, y, w, h]; a crowd's overlap is the intersection over the detection's area
    detection, region = [0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 20.0, 10.0]  # intersection 50
    np.testing.assert_allclose(coco_ious([detection], [region, region], [False, True]),
                               [[50 / 250, 50 / 100]])
    assert coco_ious([], [region], [False]).shape == (0, 1)


def test_bad_input_is_named():
    ious = np.ones((2, 3))
    with pytest.raises(ValueError, match="gt_labels has 1 entries for 2 objects"):
        match_by_iou(ious, [1], [1, 1, 1], [0.9, 0.8, 0.7])
    with pytest.raises(ValueError, match="pred_scores has 2 entries for 3 detections"):
        match_by_iou(ious, [1, 1], [1, 1, 1], [0.9, 0.8])
    with pytest.raises(ValueError, match="same_class=True needs gt_labels and pred_labels"):
        match_by_iou(ious, pred_scores=[0.9, 0.8, 0.7])
    with pytest.raises(ValueError, match='first="score" needs pred_scores'):
        match_by_iou(ious, same_class=False)
    with pytest.raises(ValueError, match="first must be"):
        match_by_iou(ious, same_class=False, first="iou")


def test_the_package_re_exports_each_module():
    names = [*matching.__all__, *ap.__all__, *analyses.__all__, *coco.__all__]
    assert sorted(evaluation.__all__) == sorted(set(names))
    assert all(getattr(evaluation, name) is not None for name in evaluation.__all__)
