"""Chapter 08's evaluation explorer: the matching against ``evaluate_detections``, a hand-made case
with known answers, and the explorer driven by setting its controls' ``.value``."""
from pathlib import Path

import numpy as np
import pytest

from maskrcnn_edu.evaluation.coco import coco_evaluate, coco_ground_truth
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.evaluation import IOU_THRESHOLDS, evaluate_detections
from maskrcnn_edu.explorers.evaluation import (
    ALL_CLASSES,
    curve,
    evaluation_explorer,
    false_positive_kinds,
    image_errors,
    image_outcome,
    match_results,
    operating_point,
)
from maskrcnn_edu.model import MaskRCNN

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "data" / "shapes_model" / "model.pt"


@pytest.fixture(scope="module")
def dataset():
    return ShapesDataset(12, seed=3)


@pytest.fixture(scope="module")
def shapes_eval(dataset):
    """The shipped model's detections on 12 held-out Shapes images, and their ground truth."""
    model = MaskRCNN.from_checkpoint(SHIPPED_MODEL).eval()
    _, results = coco_evaluate(model, dataset, progress=False, iou_types=("bbox",))
    return coco_ground_truth(dataset).dataset, results


@pytest.fixture(scope="module")
def matched(shapes_eval):
    return match_results(*shapes_eval, iou_type="bbox")


def box(x0, y0, x1, y1):
    return [x0, y0, x1 - x0, y1 - y0]  # COCO's [x, y, w, h]


def hand_case():
    """One 100 x 100 image, three squares (category 1) and a crowd region; six detections.

    IoUs with their best object: d0 1.0 (object 0), d1 0.64 (object 1), d2 1.0 (object 0 again: a
    duplicate), d3 0.0 (background), d4 0.81 (object 1, already taken by d1), d5 on the crowd.
    Object 2 is never found.
    """
    annotations = [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": box(0, 0, 10, 10), "area": 100.0, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": box(20, 0, 30, 10), "area": 100.0, "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": box(40, 0, 50, 10), "area": 100.0, "iscrowd": 0},
        {"id": 4, "image_id": 7, "category_id": 1, "bbox": box(0, 50, 40, 90), "area": 1600.0, "iscrowd": 1},
    ]
    ground_truth = {"images": [{"id": 7, "height": 100, "width": 100}], "annotations": annotations,
                    "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "circle"}]}
    results = [
        {"image_id": 7, "category_id": 1, "bbox": box(0, 0, 10, 10), "score": 0.9},  # d0 right
        {"image_id": 7, "category_id": 1, "bbox": box(20, 0, 30, 6.4), "score": 0.8},  # d1 IoU 0.64
        {"image_id": 7, "category_id": 1, "bbox": box(0, 0, 10, 10), "score": 0.7},  # d2 duplicate of d0
        {"image_id": 7, "category_id": 1, "bbox": box(70, 70, 80, 80), "score": 0.6},  # d3 background
        {"image_id": 7, "category_id": 1, "bbox": box(20, 0, 30, 8.1), "score": 0.5},  # d4 IoU 0.81, taken
        {"image_id": 7, "category_id": 1, "bbox": box(5, 55, 15, 65), "score": 0.4},  # d5 inside the crowd
    ]
    return ground_truth, results


def test_hand_case_true_positives_at_two_thresholds():
    matched = match_results(*hand_case())
    at_50, at_75 = curve(matched, "square", 0.5), curve(matched, "square", 0.75)
    # The crowd detection is left out; the others in order of score.
    assert at_50.scores.tolist() == [0.9, 0.8, 0.7, 0.6, 0.5]
    assert at_50.is_true_positive.tolist() == [True, True, False, False, False]
    # At 0.75, d1 (0.64) misses object 1, so d4 (0.81) takes it.
    assert at_75.is_true_positive.tolist() == [True, False, False, False, True]
    assert at_50.num_ground_truth == at_75.num_ground_truth == 3  # the crowd is no object
    # AP at 0.50: precision 1 up to recall 2/3 (67 of the 101 levels), nothing beyond.
    assert at_50.ap == pytest.approx(67 / 101)
    # AP at 0.75: envelope 1 up to recall 1/3 (34 levels), then 2/5 up to 2/3 (33 levels).
    assert at_75.ap == pytest.approx((34 * 1 + 33 * 0.4) / 101)


def test_hand_case_operating_points_and_image_outcome():
    matched = match_results(*hand_case())
    point = operating_point(curve(matched, "square", 0.5), 0.65, 0.5)  # keeps d0, d1, d2
    assert (point.kept, point.true_positives, point.false_positives, point.missed) == (3, 2, 1, 1)
    assert point.precision == pytest.approx(2 / 3) and point.recall == pytest.approx(2 / 3)
    nothing = operating_point(curve(matched, "square", 0.5), 0.95, 0.5)
    assert (nothing.kept, nothing.precision, nothing.recall) == (0, 1.0, 0.0)

    outcome = image_outcome(matched, 7, iou_threshold=0.75, score_threshold=0.0)
    found = {int(matched.detection_score[d] * 10): int(g)
             for d, g in zip(outcome.true_positives, outcome.found)}
    assert found == {9: 0, 5: 1}  # d0 took object 0, d4 object 1
    false_scores = (matched.detection_score[outcome.false_positives] * 10).round().astype(int)
    assert sorted(false_scores.tolist()) == [6, 7, 8]
    assert outcome.missed.tolist() == [2]
    assert outcome.counts() == "2 right, 3 false positives, 1 missed"  # the crowd detection: neither


def test_false_positives_are_sorted_by_kind():
    ground_truth, results = hand_case()
    circle_on_object_0 = {"image_id": 7, "category_id": 2, "bbox": box(1, 0, 10, 10), "score": 0.3}  # IoU 0.9
    matched = match_results(ground_truth, [*results, circle_on_object_0])
    by_score = lambda indices: sorted(indices, key=lambda d: -matched.detection_score[d])
    at_50 = image_outcome(matched, 7, iou_threshold=0.5, score_threshold=0.0)
    kinds = false_positive_kinds(matched, by_score(at_50.false_positives), 0.5)
    assert kinds == ["duplicate", "background", "duplicate", "wrong class"]  # d2, d3, d4, the circle
    at_75 = image_outcome(matched, 7, iou_threshold=0.75, score_threshold=0.0)
    kinds = false_positive_kinds(matched, by_score(at_75.false_positives), 0.75)
    # d1 (IoU 0.64), d2, d3, the circle
    assert kinds == ["poorly placed", "duplicate", "background", "wrong class"]
    assert matched.detection_best_iou[by_score(at_75.false_positives)[0]] == pytest.approx(0.64)


def test_curves_are_evaluate_detections_curves(shapes_eval, matched):
    evaluation = evaluate_detections(*shapes_eval, iou_type="bbox")
    for name in ("square", "circle", "triangle"):
        for t in IOU_THRESHOLDS[[0, 5, 9]]:
            theirs, ours = evaluation.curve(name, t), curve(matched, name, t)
            assert np.array_equal(ours.scores, theirs.scores)
            assert np.array_equal(ours.is_true_positive, theirs.is_true_positive)
            assert ours.num_ground_truth == theirs.num_ground_truth
            assert ours.ap == theirs.ap


def test_mask_curves_are_evaluate_detections_curves():
    model = MaskRCNN.from_checkpoint(SHIPPED_MODEL).eval()
    small = ShapesDataset(4, seed=3)
    _, results = coco_evaluate(model, small, progress=False, iou_types=("segm",))
    ground_truth = coco_ground_truth(small).dataset
    matched = match_results(ground_truth, results, iou_type="segm")
    evaluation = evaluate_detections(ground_truth, results, iou_type="segm")
    classes = [row["class"] for row in evaluation.per_class() if row["ground_truth"] > 0]
    assert len(classes) >= 2
    for name in classes:
        for t in (0.5, 0.75, 0.9):
            ours, theirs = curve(matched, name, t), evaluation.curve(name, t)
            assert np.array_equal(ours.scores, theirs.scores)
            assert np.array_equal(ours.is_true_positive, theirs.is_true_positive)


def test_all_classes_ranks_every_detection_against_every_object(shapes_eval, matched):
    ground_truth, results = shapes_eval
    everything = curve(matched, ALL_CLASSES, 0.5)
    assert len(everything.scores) == len(results)
    assert everything.num_ground_truth == len(ground_truth["annotations"])
    per_class = sum(int(curve(matched, name, 0.5).is_true_positive.sum())
                    for name in ("square", "circle", "triangle"))
    assert int(everything.is_true_positive.sum()) == per_class


def test_each_image_accounts_for_its_detections_and_objects(shapes_eval, matched):
    ground_truth, results = shapes_eval
    for image_id in matched.image_ids:
        outcome = image_outcome(matched, image_id, iou_threshold=0.5, score_threshold=0.3)
        kept = sum(1 for r in results if r["image_id"] == image_id and r["score"] >= 0.3)
        objects = sum(1 for a in ground_truth["annotations"] if a["image_id"] == image_id)
        assert len(outcome.true_positives) + len(outcome.false_positives) == kept
        assert len(outcome.found) + len(outcome.missed) == objects
        assert len(set(outcome.found.tolist())) == len(outcome.found)  # an object is found once
        found_category = matched.object_category[outcome.found]
        assert (found_category == matched.detection_category[outcome.true_positives]).all()
        for d in outcome.true_positives:  # the indices lead back to the inputs
            assert results[matched.detection_result[d]]["score"] == matched.detection_score[d]
        for g in outcome.found:
            assert ground_truth["annotations"][matched.object_annotation[g]]["image_id"] == image_id
    errors = image_errors(matched)
    mistakes = [len(o.false_positives) + len(o.missed) for o in errors]
    assert mistakes == sorted(mistakes, reverse=True) and len(errors) == len(matched.image_ids)


def test_raising_the_score_threshold_never_adds_detections(dataset, matched):
    explorer = evaluation_explorer(matched, lambda i: dataset[i][0], draw=False)
    for category in (ALL_CLASSES, "triangle"):
        explorer.controls["category"].value = category
        kept, right, recall = [], [], []
        for score in np.linspace(0.0, 1.0, 21):
            explorer.controls["score_threshold"].value = float(score)
            point = explorer.state.point
            kept.append(point.kept)
            right.append(point.true_positives)
            recall.append(point.recall)
            assert f"precision {point.precision:.3f}, recall {point.recall:.3f}" in explorer.state.caption
        assert kept == sorted(kept, reverse=True) and right == sorted(right, reverse=True)
        assert recall == sorted(recall, reverse=True)
        assert kept[0] > kept[-1]  # the sweep did change something


def test_a_stricter_iou_threshold_never_raises_recall(dataset, matched):
    explorer = evaluation_explorer(matched, lambda i: dataset[i][0], draw=False)
    for category in (ALL_CLASSES, "square", "circle", "triangle"):
        explorer.controls["category"].value = category
        for score in (0.05, 0.5, 0.9):
            explorer.controls["score_threshold"].value = score
            explorer.controls["iou_threshold"].value = 0.5
            loose = explorer.state.point
            explorer.controls["iou_threshold"].value = 0.9
            strict = explorer.state.point
            assert strict.kept == loose.kept  # the threshold sorts detections, it keeps them all
            assert strict.recall <= loose.recall and strict.precision <= loose.precision


def test_the_image_slider_redraws_that_image(dataset, matched):
    explorer = evaluation_explorer(matched, lambda i: dataset[i][0], draw=True)
    assert len(explorer.state.figure.axes) == 2
    assert explorer.state.figure.get_size_inches()[0] <= 12  # fits the column at dpi 80
    explorer.controls["image_index"].value = 5
    assert explorer.state.outcome.image_id == matched.image_ids[5]
    assert explorer.image.value[:4] == b"\x89PNG"
    assert f"image {matched.image_ids[5]}: " in explorer.state.caption


def test_bad_arguments_are_named(matched):
    with pytest.raises(ValueError, match="iou_threshold"):
        curve(matched, "square", 0.52)
    with pytest.raises(ValueError, match="hexagon"):
        curve(matched, "hexagon", 0.5)
    with pytest.raises(ValueError, match="image_id"):
        image_outcome(matched, 12345)
    with pytest.raises(ValueError, match="iou_type"):
        match_results({"images": [], "annotations": [], "categories": []}, [], iou_type="keypoints")
    with pytest.raises(ValueError, match="no ground-truth object"):
        curve(match_results(*hand_case()), "circle", 0.5)
