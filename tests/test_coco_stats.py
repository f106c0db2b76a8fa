"""The readable COCO AP of ``maskrcnn_edu.evaluation`` against pycocotools' COCOeval, and by hand.

``coco_stats`` must give COCOeval's twelve numbers on seeded random scenes that exercise every rule
COCO has (shifted, rescaled, relabelled, duplicated and missing detections; crowds; images without
objects or without detections; more than 100 detections on an image; all three area ranges and
their boundaries; categories without objects; tied scores), for boxes and for masks. Small
hand-made cases pin exact values: the worked example of the 101-point AP, the greedy matching,
the per-class table and the confusion matrix.
"""
import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn_edu.evaluation.coco import coco_ground_truth, detections_to_coco, evaluate_results
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.evaluation import (
    SUMMARY_NAMES,
    coco_stats,
    confusion_matrix,
    evaluate_detections,
    match_detections,
    precision_recall_curve,
)

HEIGHT, WIDTH = 120, 160
CATEGORY_IDS = (1, 2, 3, 5, 9)  # 9 has no ground truth; detections relabelled to it are all wrong


# --- pycocotools, as the reference --------------------------------------------------------------------


def cocoeval_stats(ground_truth: dict, results: list[dict], iou_type: str,
                   mask_area: bool = False) -> list[float]:
    """COCOeval's stats, on copies (COCOeval writes into the dicts it is given), quietly, of the
    results as ``COCO.loadRes`` reads them. ``mask_area``: each result is given only the field it
    is scored on, so that for segm loadRes takes its area from the mask, not from its box (what
    ``evaluate_results`` does, and ``evaluate_detections`` follows)."""
    if mask_area:
        shape_key = "bbox" if iou_type == "bbox" else "segmentation"
        results = [{k: r[k] for k in ("image_id", "category_id", "score", shape_key)} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(ground_truth)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results)) if results else _empty_results(coco_gt)
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats.tolist()


def _empty_results(coco_gt: COCO) -> COCO:
    coco_dt = COCO()
    coco_dt.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
                       "annotations": []}
    coco_dt.createIndex()
    return coco_dt


# --- a random scene -------------------------------------------------------------------------------------


def rle(mask: np.ndarray) -> dict:
    """``[H, W]`` 0/1 -> compressed RLE with str counts (as JSON and detections_to_coco have it)."""
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """``[H, W]`` 0/1 -> COCO's uncompressed RLE (run lengths down the columns, background first),
    the form COCO's crowd annotations come in."""
    pixels = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], pixels, [1 - pixels[-1]]])))
    return {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], changes])).tolist()}


def shape_mask(rng, x0, y0, w, h) -> np.ndarray:
    """A rectangle or an ellipse filling the box ``(x0, y0, w, h)``, clipped to the image."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    if rng.random() < 0.5:
        mask[max(y0, 0):max(y0 + h, 0), max(x0, 0):max(x0 + w, 0)] = 1
    else:
        ys, xs = np.mgrid[:HEIGHT, :WIDTH]
        cy, cx = y0 + h / 2, x0 + w / 2
        mask[((ys + 0.5 - cy) / (h / 2)) ** 2 + ((xs + 0.5 - cx) / (w / 2)) ** 2 <= 1] = 1
    return mask


def random_box(rng):
    """A box of a random size class: small (sides 3-30), medium (35-90) or large (100-118)."""
    low, high = [(3, 30), (35, 90), (100, 118)][rng.integers(3)]
    w, h = rng.integers(low, high + 1, size=2)
    w, h = min(w, WIDTH - 1), min(h, HEIGHT - 1)
    return int(rng.integers(0, WIDTH - w + 1)), int(rng.integers(0, HEIGHT - h + 1)), int(w), int(h)


def random_ground_truth(rng) -> dict:
    """Eight images (ids not in order, two of them empty), objects of every size, crowds
    (uncompressed RLE), polygons, duplicated objects whose ``area`` field puts them in another
    range, and areas exactly on the range boundaries."""
    image_ids = [20, 3, 11, 7, 31, 10, 30, 21]
    images = [{"id": i, "height": HEIGHT, "width": WIDTH} for i in image_ids]
    annotations = []
    for image_id in image_ids[:6]:  # images 30 and 21 have no objects
        for _ in range(rng.integers(1, 7)):
            x0, y0, w, h = random_box(rng)
            mask = shape_mask(rng, x0, y0, w, h)
            annotation = {"image_id": image_id, "category_id": int(rng.choice(CATEGORY_IDS[:4])),
                          "iscrowd": 0, "segmentation": rle(mask), "area": float(mask.sum()),
                          "bbox": mask_utils.toBbox(rle(mask)).tolist()}
            draw = rng.random()
            if draw < 0.1:  # a crowd region
                annotation.update(iscrowd=1, segmentation=uncompressed_rle(mask))
            elif draw < 0.2:  # a polygon (the rectangle's outline)
                annotation["segmentation"] = [[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]]
            elif draw < 0.3:  # exactly on a range boundary (both ranges include it)
                annotation["area"] = float(rng.choice([32**2, 96**2]))
            annotations.append(annotation)
            if rng.random() < 0.1:  # the same object again, its area field in another range
                annotations.append({**annotation, "area": annotation["area"] * float(rng.choice([0.3, 3.0]))})
    for number, annotation in enumerate(annotations, start=1):
        annotation["id"] = number
    categories = [{"id": i, "name": f"class {i}"} for i in CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}


def perturbed_detection(rng, annotation: dict) -> dict:
    """A detection of ``annotation``: box and mask shifted and rescaled, a coarse (tie-prone) score,
    sometimes another label."""
    x, y, w, h = annotation["bbox"]
    scale = rng.uniform(0.8, 1.25)
    w2, h2 = max(1, round(w * scale)), max(1, round(h * scale))
    x2 = round(x + (w - w2) / 2 + rng.normal() * 0.1 * w)
    y2 = round(y + (h - h2) / 2 + rng.normal() * 0.1 * h)
    mask = shape_mask(rng, x2, y2, w2, h2)
    category = annotation["category_id"] if rng.random() > 0.1 else int(rng.choice(CATEGORY_IDS))
    box = [x2 + rng.normal() * 0.3, y2 + rng.normal() * 0.3, w2 * rng.uniform(0.95, 1.05),
           h2 * rng.uniform(0.95, 1.05)]
    return {"image_id": annotation["image_id"], "category_id": category,
            "score": round(float(rng.random()), 1), "bbox": box, "segmentation": rle(mask)}


def random_results(rng, ground_truth: dict) -> list[dict]:
    """Detections of most objects (some missed, some twice), false positives of every size (one
    box exactly 32 x 32), 130 detections on image 7, none on image 11, and one of a category the
    ground truth does not know."""
    results = []
    for annotation in ground_truth["annotations"]:
        if annotation["image_id"] == 11 or rng.random() < 0.15:
            continue
        results.append(perturbed_detection(rng, annotation))
        if rng.random() < 0.2:
            results.append(perturbed_detection(rng, annotation))
    for image in ground_truth["images"]:
        if image["id"] == 11:
            continue
        for _ in range(rng.integers(0, 4)):
            x0, y0, w, h = random_box(rng)
            results.append({"image_id": image["id"], "category_id": int(rng.choice(CATEGORY_IDS)),
                            "score": float(rng.random()), "bbox": [float(x0), float(y0), float(w), float(h)],
                            "segmentation": rle(shape_mask(rng, x0, y0, w, h))})
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[:32, :32] = 1
    results.append({"image_id": 20, "category_id": 2, "score": 0.5, "bbox": [0.0, 0.0, 32.0, 32.0],
                    "segmentation": rle(mask)})
    for _ in range(130):  # more than COCO's 100 per image and class: the lowest-scored 30 drop out
        x0, y0, w, h = (int(rng.integers(0, 140)), int(rng.integers(0, 100)), int(rng.integers(2, 20)),
                        int(rng.integers(2, 20)))
        results.append({"image_id": 7, "category_id": 1, "score": round(float(rng.random()), 2),
                        "bbox": [float(x0), float(y0), float(w), float(h)],
                        "segmentation": rle(shape_mask(rng, x0, y0, w, h))})
    results.append({**results[0], "category_id": 42})
    order = rng.permutation(len(results))
    return [results[i] for i in order]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", range(5))
def test_coco_stats_equals_cocoeval_on_random_scenes(seed, iou_type):
    rng = np.random.default_rng(seed)
    ground_truth = random_ground_truth(rng)
    results = random_results(rng, ground_truth)
    untouched = copy.deepcopy((ground_truth, results))
    expected = cocoeval_stats(ground_truth, results, iou_type)
    assert sum(value == -1 for value in expected) <= 4  # the scene exercises (nearly) every number
    assert coco_stats(ground_truth, results, iou_type) == pytest.approx(expected, abs=1e-9)
    # The project's own reading (evaluate_results): a segm detection's area is its mask's.
    by_mask = cocoeval_stats(ground_truth, results, iou_type, mask_area=True)
    assert evaluate_detections(ground_truth, results, iou_type).stats() == pytest.approx(by_mask, abs=1e-9)
    assert (ground_truth, results) == untouched  # unlike COCOeval, the inputs are left as they were


def test_segm_results_with_a_box_are_sized_by_the_box_as_loadres_reads_them():
    # pycocotools' COCO.loadRes takes a result's area from its "bbox" when it has one (the branch
    # before "segmentation"), so a segm result written with its box, as detectron2 writes them, is
    # put in the size range of its box. One small object (10 x 10) found by the 0.9 detection; the
    # 0.95 detection is a 10 x 10 mask on the background whose box says 40 x 40 (medium).
    square = lambda x, y, s: rle(np.pad(np.ones((s, s)), ((y, 100 - y - s), (x, 100 - x - s))))  # noqa: E731
    ground_truth = {
        "images": [{"id": 1, "height": 100, "width": 100}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": square(0, 0, 10),
                         "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0, "iscrowd": 0}],
    }
    results = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": square(0, 0, 10),
                "bbox": [0.0, 0.0, 10.0, 10.0]},
               {"image_id": 1, "category_id": 1, "score": 0.95, "segmentation": square(50, 50, 10),
                "bbox": [50.0, 50.0, 40.0, 40.0]}]
    stats = coco_stats(ground_truth, results, "segm")
    assert stats == pytest.approx(cocoeval_stats(ground_truth, results, "segm"), abs=1e-12)
    assert stats[3] == pytest.approx(1.0)  # APs: the false positive is medium by its box, not small
    # Sized by their masks (the project's evaluate_results), both are small: APs = AP = 1/2.
    by_mask = evaluate_detections(ground_truth, results, "segm").stats()
    assert by_mask == pytest.approx(cocoeval_stats(ground_truth, results, "segm", mask_area=True), abs=1e-12)
    assert by_mask[3] == pytest.approx(0.5)  # ranked wrong, right: precision 1/2 at every recall
    # loadRes decides on the first result: with its box, every result needs one (loadRes: KeyError)
    with pytest.raises(ValueError, match=r"results\[1\] has no 'bbox' but results\[0\] has one"):
        coco_stats(ground_truth, [results[0], {k: v for k, v in results[1].items() if k != "bbox"}], "segm")
    # without a box on the first, loadRes sizes every result by its mask
    first_without_box = [{k: v for k, v in results[0].items() if k != "bbox"}, results[1]]
    assert coco_stats(ground_truth, first_without_box, "segm") == pytest.approx(by_mask, abs=1e-12)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_stats_equals_cocoeval_without_detections_and_without_large_objects(iou_type):
    rng = np.random.default_rng(7)
    ground_truth = random_ground_truth(rng)
    ground_truth["annotations"] = [a for a in ground_truth["annotations"] if a["area"] < 96**2]
    expected = cocoeval_stats(ground_truth, [], iou_type)
    assert expected[5] == -1 and expected[11] == -1  # APl, ARl: no large object
    assert coco_stats(ground_truth, [], iou_type) == pytest.approx(expected, abs=1e-9)


def test_coco_stats_equals_coco_eval_module_on_shapes():
    # The two modules of the package agree: the readable one and the pycocotools plumbing, on
    # Shapes objects found with a shifted box (IoU 2/3) and every third object missed.
    dataset = ShapesDataset(6, seed=3)
    detections, image_ids = [], []
    for index in range(len(dataset)):
        _, target = dataset[index]
        keep = np.arange(len(target["labels"])) % 3 != 2
        boxes = target["boxes"][keep].clone()
        boxes[:, [0, 2]] += 0.2 * (boxes[:, 2:3] - boxes[:, 0:1])
        detections.append({"boxes": boxes, "labels": target["labels"][keep],
                           "scores": 0.5 + 0.05 * target["labels"][keep],
                           "masks": target["masks"][keep][:, None].float()})
        image_ids.append(index)
    ground_truth = coco_ground_truth(dataset).dataset
    results = detections_to_coco(detections, image_ids)
    metrics = evaluate_results(coco_ground_truth(dataset), results)
    for iou_type in ("bbox", "segm"):
        # evaluate_results gives loadRes segm results without their box: sized by the mask, as
        # evaluate_detections sizes them (coco_stats would size them by the box, as loadRes does).
        readable = dict(zip(SUMMARY_NAMES, evaluate_detections(ground_truth, results, iou_type).stats()))
        official = {name: -1.0 if metrics[iou_type][name] is None else metrics[iou_type][name]
                    for name in SUMMARY_NAMES}
        assert readable == pytest.approx(official, abs=1e-9)


# --- hand-made cases with exact values -------------------------------------------------------------------


def two_objects_three_detections() -> tuple[dict, list[dict]]:
    """One image, class "cat": two 10 x 10 boxes (small), found by detections scored 0.9 and 0.7;
    the 0.8 detection lies elsewhere. Class "dog": one 40 x 40 box (medium), found exactly.
    Class "bird": nothing."""
    box = lambda x, y, s: [float(x), float(y), float(s), float(s)]  # noqa: E731
    ground_truth = {
        "images": [{"id": 1, "height": 100, "width": 100}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": box(0, 0, 10), "area": 100.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": box(50, 0, 10), "area": 100.0, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": box(50, 50, 40), "area": 1600.0, "iscrowd": 0},
        ],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": box(0, 0, 10), "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": box(20, 20, 10), "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": box(50, 0, 10), "score": 0.7},
        {"image_id": 1, "category_id": 2, "bbox": box(50, 50, 40), "score": 0.6},
    ]
    return ground_truth, results


def test_worked_example_of_the_101_point_ap():
    # Ranked: right, wrong, right; two objects. Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # The envelope is 1 at recall levels 0 .. 0.50 (51 levels) and 2/3 at 0.51 .. 1 (50 levels):
    # AP = (51 * 1 + 50 * 2/3) / 101 = 253/303 = 0.83498...
    curve = precision_recall_curve([0.7, 0.9, 0.8], [True, True, False], num_ground_truth=2)  # any order in
    assert curve.scores.tolist() == [0.9, 0.8, 0.7]
    assert curve.is_true_positive.tolist() == [True, False, True]
    assert curve.precision.tolist() == pytest.approx([1, 1 / 2, 2 / 3])
    assert curve.recall.tolist() == [0.5, 0.5, 1.0]
    assert curve.interpolated[:51].tolist() == [1.0] * 51
    assert curve.interpolated[51:].tolist() == pytest.approx([2 / 3] * 50)
    assert curve.ap == pytest.approx(253 / 303)
    # Half the objects never found: levels above 0.5 count 0 -> AP = 51/101.
    assert precision_recall_curve([0.9], [True], 2).ap == pytest.approx(51 / 101)


def test_hand_made_stats_per_class_table_and_curve():
    ground_truth, results = two_objects_three_detections()
    # cat: AP 253/303 at every IoU threshold (the true detections are exact); dog: 1; bird: no
    # objects, left out of the mean. AP = (253/303 + 1) / 2. Small objects: the cats only; medium:
    # the dog; large: none. AR1: the best cat detection finds one cat of two (1/2), the dog 1.
    ap = (253 / 303 + 1) / 2
    expected = [ap, ap, ap, 253 / 303, 1.0, -1.0, 0.75, 1.0, 1.0, 1.0, 1.0, -1.0]
    assert coco_stats(ground_truth, results, "bbox") == pytest.approx(expected, abs=1e-12)
    assert cocoeval_stats(ground_truth, results, "bbox") == pytest.approx(expected, abs=1e-12)
    evaluation = evaluate_detections(ground_truth, results, "bbox")
    assert evaluation.per_class() == [
        {"class": "cat", "category_id": 1, "AP": pytest.approx(253 / 303), "AP50": pytest.approx(253 / 303),
         "AP75": pytest.approx(253 / 303), "ground_truth": 2},
        {"class": "dog", "category_id": 2, "AP": 1.0, "AP50": 1.0, "AP75": 1.0, "ground_truth": 1},
        {"class": "bird", "category_id": 3, "AP": None, "AP50": None, "AP75": None, "ground_truth": 0},
    ]
    assert evaluation.curve("cat", 0.75).precision.tolist() == pytest.approx([1, 1 / 2, 2 / 3])
    assert evaluation.curve(2).ap == 1.0
    with pytest.raises(ValueError, match="'bird' has no ground-truth object"):
        evaluation.curve("bird")
    with pytest.raises(ValueError, match="iou_threshold must be one of"):
        evaluation.curve("cat", 0.3)


def test_match_detections_greedy_rules():
    # Detections in score order (rows), objects (columns). Object 2 is ignored (out of range),
    # object 3 a crowd (so ignored too).
    ious = np.array([
        [0.60, 0.70, 0.00, 0.00],  # takes object 1, its best
        [0.80, 0.90, 0.00, 0.00],  # object 1 is taken: object 0, though it overlaps 1 more
        [0.55, 0.00, 0.95, 0.00],  # object 0 is taken; an ignored object only when no counted one is free
        [0.00, 0.00, 0.00, 0.60],  # the crowd
        [0.00, 0.00, 0.00, 0.70],  # the crowd again: crowds can be matched any number of times
        [0.00, 0.00, 0.00, 0.00],  # nothing
    ])
    ignored = np.array([False, False, True, True])
    crowd = np.array([False, False, False, True])
    matches = match_detections(ious, ignored, crowd, np.array([0.5, 0.65, 0.75]))
    assert matches.tolist() == [
        [1, 0, 2, 3, 3, -1],  # IoU >= 0.50
        [1, 0, 2, -1, 3, -1],  # IoU >= 0.65
        [-1, 1, 2, -1, -1, -1],  # IoU >= 0.75: the first detection overlaps nothing enough
    ]
    # a counted object is preferred to an ignored one that overlaps more
    preferred = match_detections(np.array([[0.6, 0.9]]), np.array([False, True]), np.array([False, False]))
    assert preferred.tolist()[0] == [0]
    # of equal overlaps, the later object (as COCOeval's scan keeps the last best)
    tied = match_detections(np.array([[0.8, 0.8]]), np.array([False, False]), np.array([False, False]))
    assert tied[0].tolist() == [1]


def test_equal_overlaps_go_to_the_later_object_as_in_cocoeval():
    # Objects A = [0, 10] and B = [5, 15] (x; 10 high). The 0.9 detection [2.5, 12.5] overlaps both
    # by IoU 75/125 = 0.6; it takes the later, B, and the 0.8 detection (= A: IoU 1 with A, 1/3
    # with B) takes A: both right, AP50 = 1. Were the tie given to A, the second would be wrong.
    ground_truth = {
        "images": [{"id": 1, "height": 20, "width": 20}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0],
                         "area": 100.0, "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5.0, 0.0, 10.0, 10.0],
                         "area": 100.0, "iscrowd": 0}],
    }
    results = [{"image_id": 1, "category_id": 1, "bbox": [2.5, 0.0, 10.0, 10.0], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.8}]
    stats = coco_stats(ground_truth, results, "bbox")
    assert stats[1] == 1.0  # AP50
    assert stats == pytest.approx(cocoeval_stats(ground_truth, results, "bbox"), abs=1e-12)


def test_confusion_matrix_hand_made():
    # One 100 x 100 image. Objects: cat A, dog B, cat C, and a crowd of dogs.
    box = lambda x, y, s: [float(x), float(y), float(s), float(s)]  # noqa: E731
    ground_truth = {
        "images": [{"id": 1, "height": 100, "width": 100}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": box(0, 0, 10), "area": 100.0},  # A
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": box(20, 20, 10), "area": 100.0},  # B
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": box(40, 0, 10), "area": 100.0},  # C
            {"id": 4, "image_id": 1, "category_id": 2, "bbox": box(0, 40, 30), "area": 900.0, "iscrowd": 1},
        ],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": box(0, 0, 10), "score": 0.9},  # A as cat: right
        {"image_id": 1, "category_id": 1, "bbox": box(20, 20, 10), "score": 0.8},  # B (a dog) as cat
        # A again (IoU 0.82 < 1): a false positive dog
        {"image_id": 1, "category_id": 2, "bbox": box(1, 0, 10), "score": 0.7},
        {"image_id": 1, "category_id": 1, "bbox": box(60, 60, 5), "score": 0.9},  # background: false positive
        {"image_id": 1, "category_id": 1, "bbox": box(2, 42, 5), "score": 0.9},  # in the crowd: not counted
        # C, below the score threshold: C missed
        {"image_id": 1, "category_id": 1, "bbox": box(40, 0, 10), "score": 0.3},
    ]
    matrix = confusion_matrix(ground_truth, results, "bbox", iou_threshold=0.5, score_threshold=0.5)
    assert matrix.class_names == ["cat", "dog"]
    #                             cat dog missed
    assert matrix.counts.tolist() == [[1, 0, 1],  # cat: A right, C missed
                                      [1, 0, 0],  # dog: B taken for a cat
                                      [1, 1, 0]]  # false positives: a cat on the background, a dog twice on A
    assert matrix.table().splitlines()[0].split() == ["cat", "dog", "missed"]
    # a lower score threshold finds C
    lower = confusion_matrix(ground_truth, results, "bbox", score_threshold=0.2)
    assert lower.counts[0].tolist() == [2, 0, 0]


def test_bad_input_is_named():
    ground_truth, results = two_objects_three_detections()
    with pytest.raises(ValueError, match="iou_type must be one of"):
        coco_stats(ground_truth, results, "keypoints")
    with pytest.raises(ValueError, match=r"ground_truth\['annotations'\]\[0\] has no \['segmentation'\]"):
        coco_stats(ground_truth, results, "segm")
    with pytest.raises(ValueError, match=r"results\[1\] has no \['score'\]"):
        coco_stats(ground_truth, [results[0], {k: v for k, v in results[1].items() if k != "score"}], "bbox")
    with pytest.raises(ValueError, match=r"image ids \[5\]"):
        coco_stats(ground_truth, [{**results[0], "image_id": 5}], "bbox")
    with pytest.raises(ValueError, match="num_ground_truth must be positive"):
        precision_recall_curve([0.5], [True], 0)
