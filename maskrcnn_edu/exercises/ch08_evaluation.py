"""Chapter 08's exercises: greedy matching at one IoU threshold, precision and recall, 101-point AP."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..boxes import box_iou
from ..evaluation import ap
from .checking import Case, Checker, Exercise, box_rows, number, random_boxes, show, tensors

__all__ = ["EXERCISES", "CHECKS"]

MATCH_DETECTIONS = Exercise(
    name="match_detections",
    chapter="08",
    title="Matching detections to objects",
    task="""\
Write `match_detections(ious, threshold)`: COCO's matching of one image's detections of one class
(section 2). `ious [D, G]` holds the IoU of each detection (rows, already in order of score, best
first) with each object. In turn, each detection takes, among the objects not taken yet that it
overlaps with IoU **at least** `threshold`, the one it overlaps most; of two equal overlaps, the
**later** object (as COCOeval does). Return, for each detection, the index of the object it took,
or `-1`, as int64 `[D]`.

Example: `match_detections(torch.tensor([[0.9, 0.0], [0.8, 0.6], [0.7, 0.0]], dtype=torch.float64), 0.5)` is
`tensor([0, 1, -1])`: detection 1 finds object 0 taken and takes object 1; detection 2 is a duplicate.""",
    stub='''\
import torch


def match_detections(ious, threshold):
    """The object each detection takes (or -1), greedily in order: ious [D, G] -> int64 [D]."""
    raise NotImplementedError  # your turn
''',
    hint="""\
Keep a bool tensor `taken [G]`. For each row, set the IoUs of taken objects and of those under the
threshold to -1, then pick the largest; `G - 1 - row.flip(0).argmax()` is the last of the largest.""",
)

PRECISION_RECALL = Exercise(
    name="precision_recall",
    chapter="08",
    title="Precision and recall down the ranking",
    task="""\
Write `precision_recall(is_true_positive, num_ground_truth)`: the raw precision-recall points of a
ranked list (section 2). `is_true_positive [D]` (bool) says, best-scored detection first, whether each
is right; `num_ground_truth` is how many objects there were to find. Return `(precision, recall)`,
two float tensors `[D]`: after the first `n` detections, precision = true positives / `n` and recall
= true positives / `num_ground_truth`.

Example: `precision_recall(torch.tensor([True, False, True]), 2)` gives precision `1, 1/2, 2/3` and
recall `1/2, 1/2, 1`.""",
    stub='''\
import torch


def precision_recall(is_true_positive, num_ground_truth):
    """Precision and recall [D] after each detection of a ranked list is_true_positive [D] (bool)."""
    raise NotImplementedError  # your turn
''',
    hint="""\
`torch.cumsum` counts the true positives so far; `torch.arange(1, D + 1)` counts the detections so far.""",
)

AVERAGE_PRECISION = Exercise(
    name="average_precision",
    chapter="08",
    title="101-point average precision",
    task="""\
Write `average_precision(is_true_positive, num_ground_truth)`: COCO's AP of one ranked list (section
3), as a float. From the raw precision and recall (your `precision_recall`), fill in the sawtooth:
the precision at recall `r` is the best precision reached at recall `r` *or higher*. Read that
envelope at the 101 recall levels `0, 1/100, 2/100, ..., 1` (`torch.linspace(0, 1, 101)`), counting 0 at a
level the list never reaches, and average the 101 values. No detections give 0.

Example: `average_precision(torch.tensor([True, False, True]), 2)` is `(51 x 1 + 50 x 2/3) / 101`: the
envelope is 1 up to recall 1/2 (51 levels) and 2/3 beyond (50 levels).""",
    stub='''\
import torch


def average_precision(is_true_positive, num_ground_truth):
    """COCO's 101-point interpolated AP of a ranked list is_true_positive [D] (bool) -> float."""
    raise NotImplementedError  # your turn
''',
    hint="""\
A running maximum from the end, `precision.flip(0).cummax(0).values.flip(0)`, is the envelope. For
each level, the first point whose recall reaches it is `torch.searchsorted(recall, level)`; levels
past the last point count 0.""",
)


def _match_reference(ious: Tensor, threshold: float) -> Tensor:
    no_crowds = np.zeros(ious.shape[1], dtype=bool)  # no crowds, no area range: every object counts
    return torch.from_numpy(ap.match_detections(ious.numpy(), no_crowds, no_crowds, [threshold])[0]).long()


def _toy_ious() -> Tensor:
    """Chapter 08's tiny example: five ranked detections against objects A, B and C, ``[5, 3]``."""
    objects = box_rows([[10, 10, 40, 40], [55, 10, 90, 45], [20, 55, 60, 90]])
    detections = box_rows([[12, 11, 41, 42], [62, 60, 92, 92], [58, 17, 92, 52], [6, 8, 38, 44],
                           [21, 56, 60, 92]])
    return box_iou(detections.double(), objects.double())


def _float64(rows) -> Tensor:
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), -1)


def _match_cases() -> list[Case]:
    cases = [Case("the chapter's example", (_toy_ious(), 0.5)),
             Case("the chapter's example", (_toy_ious(), 0.75)),
             Case("by hand", (_float64([[0.9, 0.0], [0.8, 0.6], [0.7, 0.0]]), 0.5)),
             Case("IoU equal to the threshold", (_float64([[0.5, 0.2]]), 0.5)),
             Case("equal overlaps", (_float64([[0.6, 0.6, 0.1], [0.7, 0.7, 0.7]]), 0.5)),
             Case("no objects", (torch.zeros(3, 0, dtype=torch.float64), 0.5)),
             Case("no detections", (torch.zeros(0, 2, dtype=torch.float64), 0.5))]
    for seed, threshold in zip(range(3), (0.5, 0.3, 0.1)):
        generator = torch.Generator().manual_seed(seed)
        ious = box_iou(random_boxes(12, generator).double(), random_boxes(5, generator).double())
        cases.append(Case("random", (ious, threshold), f"seed {seed}"))
    return cases


def _pr_reference(is_true_positive: Tensor, num_ground_truth: int) -> tuple[np.ndarray, np.ndarray]:
    return ap.precision_recall(is_true_positive.numpy(), num_ground_truth)


def _compare_pr(expected: tuple, got) -> str | None:
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        return f"expected a pair (precision, recall), got {show(got)}"
    for name, wanted, value in zip(("precision", "recall"), expected, got):
        problem = tensors(atol=1e-6, kind="float")(wanted, value)
        if problem:
            return f"{name}: {problem}"
    return None


def _ranked(pattern: str) -> Tensor:
    """``"TFT"`` -> ``tensor([True, False, True])``."""
    return torch.tensor([c == "T" for c in pattern], dtype=torch.bool)


def _ranked_cases() -> list[Case]:
    cases = [Case("by hand", (_ranked("TFT"), 2)), Case("the chapter's example", (_ranked("TFTFT"), 3)),
             Case("a dip and a climb", (_ranked("TFFTTT"), 4)),
             Case("every detection right", (_ranked("TTT"), 3)),
             Case("every detection wrong", (_ranked("FFFF"), 2)),
             Case("objects never found", (_ranked("TFTF"), 5)), Case("no detections", (_ranked(""), 3))]
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        right = torch.rand(40, generator=generator) < torch.linspace(0.9, 0.2, 40)  # the best: often right
        # As many objects as right detections, or a few more; a count prime to 10, so that no recall
        # k / n lands exactly on a level k' / 100 but 0 and 1 (where COCOeval's floats decide).
        objects = next(n for n in range(int(right.sum()) + seed * 3, 100) if n % 2 and n % 5)
        cases.append(Case("random", (right, objects), f"seed {seed}"))
    return cases


def _ap_reference(is_true_positive: Tensor, num_ground_truth: int) -> float:
    precision, recall = ap.precision_recall(is_true_positive.numpy(), num_ground_truth)
    return float(ap.interpolated_precision(precision, recall).mean())


EXERCISES = [MATCH_DETECTIONS, PRECISION_RECALL, AVERAGE_PRECISION]
CHECKS = {
    "match_detections": Checker(MATCH_DETECTIONS, _match_reference, _match_cases, tensors(kind="int")),
    "precision_recall": Checker(PRECISION_RECALL, _pr_reference, _ranked_cases, _compare_pr),
    "average_precision": Checker(AVERAGE_PRECISION, _ap_reference, _ranked_cases, number(atol=1e-6)),
}
