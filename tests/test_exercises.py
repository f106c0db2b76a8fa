"""maskrcnn_edu.exercises: every checker passes its worked answer, fails the stub, never raises on a
broken answer, and catches the typical mistakes of each exercise, written here as wrong variants.

The worked answers live in ``book/solutions.py`` (imported by path: ``book/`` is not a package).
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from maskrcnn_edu.exercises import CHECKS, EXERCISES, check

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])\d+\.\d{2,}(?!\d)")  # as tests/test_book_numbers.py reads the prose
ABOUT_THE_CHECKS = re.compile(r"\bthe tests\b|\btest suite\b|\btests/|\btest run\b|\bnbval\b|SMOKE",
                              re.IGNORECASE)
SOLUTIONS_PATH = ROOT / "book" / "solutions.py"


def load_solutions():
    spec = importlib.util.spec_from_file_location("book_solutions", SOLUTIONS_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


S = load_solutions()
NAMES = sorted(EXERCISES)


def verdict(name, function, capsys) -> tuple[bool, str]:
    """What ``check`` returns and the one line it prints."""
    right = check(name, function)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, f"one verdict line expected, got {out!r}"
    return right, out.strip()


def stub_function(name):
    namespace = {}
    exec(compile(EXERCISES[name].stub, f"<stub {name}>", "exec"), namespace)
    return namespace[name]


# ---------------------------------------------------------------------------------------------
# The collection: names, chapters, stubs, answers
# ---------------------------------------------------------------------------------------------


def test_every_exercise_has_a_checker_and_a_worked_answer():
    assert set(CHECKS) == set(EXERCISES)
    assert all(callable(getattr(S, name, None)) for name in EXERCISES)


def test_chapters_01_to_08_have_two_or_three_exercises_each():
    per_chapter = {}
    for exercise in EXERCISES.values():
        per_chapter.setdefault(exercise.chapter, []).append(exercise.name)
    assert sorted(per_chapter) == [f"0{k}" for k in range(1, 9)]
    assert all(2 <= len(names) <= 3 for names in per_chapter.values()), per_chapter


@pytest.mark.parametrize("name", NAMES)
def test_the_exercise_reads_plainly_and_its_stub_matches_the_worked_answer(name):
    exercise = EXERCISES[name]
    assert exercise.name == name and exercise.title and len(exercise.title) <= 45
    assert exercise.task.strip() and exercise.hint.strip()
    assert f"`{name}(" in exercise.task, "the task names the function and its arguments"
    assert "Example" in exercise.task
    for text in (exercise.title, exercise.task, exercise.hint):
        assert "!" not in text.replace("!=", "")
        # A chapter's prose quotes no number of two or more decimals that it does not print
        # (tests/test_book_numbers.py), and says nothing of the book's checks.
        assert not NUMBER.findall(text), NUMBER.findall(text)
        assert not ABOUT_THE_CHECKS.findall(text)
    # The stub compiles, defines the function alone, with a docstring, and only raises.
    tree = ast.parse(exercise.stub)
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert [f.name for f in functions] == [name]
    assert ast.get_docstring(functions[0]), "a one-line docstring with the shapes"
    assert isinstance(functions[0].body[-1], ast.Raise)
    assert "raise NotImplementedError  # your turn" in exercise.stub
    # The worked answer has the stub's signature.
    wanted = list(inspect.signature(stub_function(name)).parameters)
    assert list(inspect.signature(getattr(S, name)).parameters) == wanted == list(exercise.parameters)


def test_the_worked_answers_are_written_from_scratch():
    imported = set()
    for node in ast.walk(ast.parse(SOLUTIONS_PATH.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not any(name.startswith("maskrcnn_edu") for name in imported), imported


# ---------------------------------------------------------------------------------------------
# Verdicts on the answer, the stub and broken answers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_worked_answer_is_correct(name, capsys):
    right, out = verdict(name, getattr(S, name), capsys)
    assert right, out
    assert out.startswith(f"{name}: correct on ") and "cases (" in out


def poisoned(value):
    """A wrong version of a right answer: NaN for floats, off by one for integers, flipped bools."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool:
            return ~value
        return torch.full_like(value, math.nan) if value.is_floating_point() else value + 1
    if isinstance(value, float):
        return math.nan
    if isinstance(value, int):
        return value + 1
    if isinstance(value, (list, tuple)):
        return type(value)(poisoned(v) for v in value)
    if isinstance(value, dict):
        return {key: poisoned(v) for key, v in value.items()}
    return torch.from_numpy(value).double() * math.nan  # a NumPy array of the reference


ODD_ANSWERS = {
    "None": lambda *args: None,
    "a string": lambda *args: "garbage",
    "an object": lambda *args: object(),
    "a list of strings": lambda *args: ["a", "b"],
    "a dict": lambda *args: {"boxes": 1},
    "a tensor of the wrong shape": lambda *args: torch.zeros(2, 3, 5),
    "a ragged list": lambda *args: [[1.0], [2.0, 3.0]],
}


@pytest.mark.parametrize("name", NAMES)
def test_broken_answers_get_a_verdict_never_an_exception(name, capsys):
    assert verdict(name, stub_function(name), capsys) == (False, f"{name}: not implemented yet")

    def broken(*args):
        raise ZeroDivisionError("no luck")

    right, out = verdict(name, broken, capsys)
    assert not right and out.startswith(f"{name}: raised ZeroDivisionError: no luck on "), out
    for odd, function in ODD_ANSWERS.items():
        right, out = verdict(name, function, capsys)
        assert not right and out.startswith(f"{name}: wrong on "), f"{odd}: {out}"
    reference = CHECKS[name].reference
    right, out = verdict(name, lambda *args: poisoned(reference(*args)), capsys)
    assert not right and out.startswith(f"{name}: wrong on "), f"NaN / off by one: {out}"


def test_a_function_that_changes_its_input_is_wrong(capsys):
    def box_iou_in_place(boxes1, boxes2):
        iou = S.box_iou(boxes1, boxes2)
        boxes1.mul_(2)
        return iou

    right, out = verdict("box_iou", box_iou_in_place, capsys)
    assert not right and out.endswith("it changed its argument `boxes1` in place (work on a copy)")


def test_the_verdict_names_the_case_and_expected_against_got(capsys):
    right, out = verdict("box_iou", iou_union_not_subtracted, capsys)
    assert not right
    assert out == ("box_iou: wrong on by hand (boxes1=[[0, 0, 4, 4]], boxes2=[[2, 1, 6, 5]]): "
                   "expected [[0.2308]], got [[0.1875]]")


def test_a_large_input_is_shown_by_its_shape_and_the_first_difference(capsys):
    def iou_off_on_one_pair(boxes1, boxes2):
        iou = S.box_iou(boxes1, boxes2)
        if iou.numel() > 50:
            iou[3, 1] += 0.5
        return iou

    right, out = verdict("box_iou", iou_off_on_one_pair, capsys)
    assert not right
    assert out.startswith("box_iou: wrong on random (boxes1=float32 tensor of shape [12, 4], boxes2=float32 "
                          "tensor of shape [9, 4], seed 0): at index [3, 1] (of shape [12, 9]) expected ")


def test_verdicts_are_the_same_on_every_run(capsys):
    outputs = []
    for _ in range(2):
        for name in ("roi_pool_box", "greedy_nms", "average_precision"):
            check(name, getattr(S, name))
            check(name, lambda *args: None)
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]


def test_check_refuses_an_unknown_exercise_and_a_non_function(capsys):
    with pytest.raises(ValueError, match="no exercise named 'box_ious'"):
        check("box_ious", S.box_iou)
    assert verdict("box_iou", "def box_iou(...)", capsys) == (False, "box_iou: expected a function, got str")


# ---------------------------------------------------------------------------------------------
# The typical mistakes, one wrong variant each (at least one per exercise)
# ---------------------------------------------------------------------------------------------


def bilinear_clamped_everywhere(feature, y, x):
    """Forgets that a point more than a cell outside reads zeros."""
    _, height, width = feature.shape
    return S.bilinear_sample(feature, min(max(y, 0.0), height - 1), min(max(x, 0.0), width - 1))


def bilinear_zero_padded(feature, y, x):
    """Reads cells off the map as 0 instead of clamping into the map."""
    padded = F.pad(feature, (2, 2, 2, 2))
    if y < -1 or y > feature.shape[1] or x < -1 or x > feature.shape[2]:
        return feature.new_zeros(feature.shape[0])
    return S.bilinear_sample(padded, y + 2, x + 2)


def align(feature, box, size, scale, ratio, aligned, point=0.5, at_least_one_cell=True):
    """RoIAlign of one box with switches for its mistakes."""
    offset = 0.5 if aligned else 0.0
    x0, y0, x1, y1 = (float(v) * scale - offset for v in box)
    w, h = x1 - x0, y1 - y0
    if not aligned and at_least_one_cell:
        w, h = max(w, 1.0), max(h, 1.0)
    out = feature.new_zeros(feature.shape[0], size, size)
    for i in range(size):
        for j in range(size):
            for a in range(ratio):
                for b in range(ratio):
                    y = y0 + i * h / size + (a + point) * h / size / ratio
                    x = x0 + j * w / size + (b + point) * w / size / ratio
                    out[:, i, j] += S.bilinear_sample(feature, y, x)
    return out / ratio**2


def pool(feature, box, size, scale, rounding, inclusive=True):
    """RoIPool of one box with switches for its mistakes."""
    _, height, width = feature.shape
    x0, y0, x1, y1 = (rounding(float(v) * scale) for v in box)
    extra = 1 if inclusive else 0
    lx, ly = max(x1 - x0 + extra, 1), max(y1 - y0 + extra, 1)
    out = feature.new_zeros(feature.shape[0], size, size)
    for i in range(size):
        r0 = min(max(y0 + math.floor(i * ly / size), 0), height)
        r1 = min(max(y0 + math.ceil((i + 1) * ly / size), 0), height)
        for j in range(size):
            c0 = min(max(x0 + math.floor(j * lx / size), 0), width)
            c1 = min(max(x0 + math.ceil((j + 1) * lx / size), 0), width)
            if r0 < r1 and c0 < c1:
                out[:, i, j] = feature[:, r0:r1, c0:c1].amax(dim=(1, 2))
    return out


def c_round(v):
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def iou_parts(boxes1, boxes2):
    """Unclamped overlaps and areas, for the IoU mistakes."""
    w = torch.min(boxes1[:, None, 2], boxes2[None, :, 2]) - torch.max(boxes1[:, None, 0], boxes2[None, :, 0])
    h = torch.min(boxes1[:, None, 3], boxes2[None, :, 3]) - torch.max(boxes1[:, None, 1], boxes2[None, :, 1])
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    return w, h, area1[:, None], area2[None, :]


def iou_union_not_subtracted(boxes1, boxes2):
    w, h, a1, a2 = iou_parts(boxes1, boxes2)
    return w.clamp(min=0) * h.clamp(min=0) / (a1 + a2)


def iou_overlap_not_clamped(boxes1, boxes2):
    w, h, a1, a2 = iou_parts(boxes1, boxes2)
    return w * h / (a1 + a2 - w * h)


def labels(iou, high, low, rule=True, strict=False, ties=True):
    """Anchor labels with switches for their mistakes."""
    out = torch.zeros(iou.shape[1], dtype=torch.int64)
    if len(iou) == 0:
        return out
    best = iou.max(dim=0).values
    positive = best > high if strict else best >= high
    out[(best >= low) & ~positive] = -1
    out[positive] = 1
    if rule:
        if ties:
            out[(iou == iou.max(dim=1).values[:, None]).any(dim=0)] = 1
        else:
            out[iou.argmax(dim=1)] = 1
    return out


def decode(deltas, anchors, weights, use_weights=True, clamp=True, clamp_first=False):
    wx, wy, ww, wh = weights if use_weights else (1, 1, 1, 1)
    limit = math.log(1000 / 16) if clamp else math.inf
    wa, ha = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    xa, ya = anchors[:, 0] + wa / 2, anchors[:, 1] + ha / 2
    dw, dh = (deltas[:, 2].clamp(max=limit) / ww, deltas[:, 3].clamp(max=limit) / wh) if clamp_first else \
        ((deltas[:, 2] / ww).clamp(max=limit), (deltas[:, 3] / wh).clamp(max=limit))
    x, y = xa + deltas[:, 0] / wx * wa, ya + deltas[:, 1] / wy * ha
    w, h = wa * torch.exp(dw), ha * torch.exp(dh)
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=1)


def nms(boxes, scores, threshold, suppress_at_equal=False, only_kept=True, by_score=True):
    """Greedy NMS with switches for its mistakes."""
    order = torch.sort(scores, descending=True, stable=True).indices
    if not by_score:
        order = torch.arange(len(scores))
    overlaps = S.box_iou(boxes, boxes)
    kept, seen = [], []
    for i in order.tolist():
        against = kept if only_kept else seen
        too_close = [(overlaps[i, j] >= threshold) if suppress_at_equal else (overlaps[i, j] > threshold)
                     for j in against]
        if not any(too_close):
            kept.append(i)
        seen.append(i)
    return torch.tensor(kept, dtype=torch.int64)


def top_k_global(scores, level_sizes, k):
    return scores.topk(min(k * len(level_sizes), len(scores))).indices


def top_k_no_offset(scores, level_sizes, k):
    return torch.cat([s.topk(min(k, len(s))).indices for s in scores.split(level_sizes)])


def top_k_index_order(scores, level_sizes, k):
    return S.level_top_k(scores, level_sizes, k).sort().values


def found_strictly(boxes, objects, threshold):
    if len(boxes) == 0:
        return torch.zeros(len(objects), dtype=torch.bool)
    return S.box_iou(objects, boxes).max(dim=1).values > threshold


def fpn(boxes, canonical_size, clamp=True, root=True, rounding=torch.floor):
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    size = torch.sqrt(area) if root else area
    levels = rounding(4 + torch.log2(size / canonical_size))
    return (levels.clamp(2, 5) if clamp else levels.nan_to_num(neginf=-100)).to(torch.int64)


def class_nms_ignoring_classes(boxes, scores, labels, threshold):
    return S.greedy_nms(boxes, scores, threshold)


def class_nms_class_by_class(boxes, scores, labels, threshold):
    kept = [torch.zeros(0, dtype=torch.int64)]
    for label in labels.unique():
        members = torch.where(labels == label)[0]
        kept.append(members[S.greedy_nms(boxes[members], scores[members], threshold)])
    return torch.cat(kept)


def smooth(prediction, target, beta, swapped=False, reduce=torch.sum, divide=True):
    x = (prediction - target).abs()
    quadratic = 0.5 * x**2 / (beta if divide else 1.0)
    linear = x - 0.5 * beta
    near = x >= beta if swapped else x < beta
    return reduce(torch.where(near, quadratic, linear))


def box_loss_over_positives(box_deltas, labels, target_deltas):
    positives = max(int((labels > 0).sum()), 1)
    return S.box_loss(box_deltas, labels, target_deltas) * len(labels) / positives


def box_loss_first_class(box_deltas, labels, target_deltas):
    positive = labels > 0
    return S.smooth_l1(box_deltas[positive, :4], target_deltas[positive], 1 / 9) / len(labels)


def box_loss_with_negatives(box_deltas, labels, target_deltas):
    own = box_deltas.reshape(len(labels), -1, 4)[torch.arange(len(labels)), labels]
    return S.smooth_l1(own, target_deltas, 1 / 9) / len(labels)


def mask_loss_all_classes(mask_logits, labels, mask_targets):
    if len(labels) == 0:
        return mask_logits.sum() * 0
    return F.binary_cross_entropy_with_logits(mask_logits, mask_targets[:, None].expand_as(mask_logits))


def mask_loss_sigmoid_then_log(mask_logits, labels, mask_targets):
    if len(labels) == 0:
        return mask_logits.sum() * 0
    own = mask_logits[torch.arange(len(labels)), labels]
    p = torch.sigmoid(own)
    return -(mask_targets * torch.log(p) + (1 - mask_targets) * torch.log(1 - p)).mean()


def mask_loss_softmax(mask_logits, labels, mask_targets):
    if len(labels) == 0:
        return mask_logits.sum() * 0
    pixel_class = torch.where(mask_targets >= 0.5, labels[:, None, None], 0)
    return F.cross_entropy(mask_logits, pixel_class)


def tight_boxes_without_the_one(masks):
    return S.tight_boxes(masks) - torch.tensor([0.0, 0.0, 1.0, 1.0])


def tight_boxes_rows_for_columns(masks):
    return S.tight_boxes(masks)[:, [1, 0, 3, 2]]


def hflip(image, target, minus_one=False, swap=True, dim=-1, in_place=False):
    width = image.shape[-1] - (1 if minus_one else 0)
    b = target["boxes"]
    x0, x1 = (width - b[:, 2], width - b[:, 0]) if swap else (width - b[:, 0], width - b[:, 2])
    boxes = torch.stack([x0, b[:, 1], x1, b[:, 3]], dim=1)
    flipped = {**target, "boxes": boxes, "masks": target["masks"].flip(dim)}
    if in_place:
        target.update(flipped)
        flipped = target
    return image.flip(dim), flipped


def resized(height, width, min_size, max_size, limit=True, rounding=math.floor):
    scale = min_size / min(height, width)
    if limit:
        scale = min(scale, max_size / max(height, width))
    return int(rounding(height * scale)), int(rounding(width * scale))


def cosine(step, warmup_steps, steps, warmup_factor, from_zero=False, start=None, capped=True):
    if step < warmup_steps:
        a = step / warmup_steps
        return (warmup_factor if start is None else start) * (1 - a) + a
    progress = step / steps if from_zero else (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * (min(1.0, progress) if capped else progress)))


def step_factor(step, warmup_steps, warmup_factor, milestones, gamma, strict=False, in_warmup=False):
    decay = gamma ** sum((step > m) if strict else (step >= m) for m in milestones)
    if step < warmup_steps:
        a = step / warmup_steps
        return (warmup_factor * (1 - a) + a) * (decay if in_warmup else 1)
    return decay


def clip_each(gradients, max_norm):
    total = float(sum(g.pow(2).sum() for g in gradients)) ** 0.5
    return [g * min(1.0, max_norm / max(float(g.norm()), 1e-12)) for g in gradients], total


def clip_always(gradients, max_norm):
    total = float(sum(g.pow(2).sum() for g in gradients)) ** 0.5
    return [g * (max_norm / total) for g in gradients], total


def match(ious, threshold, once=True, strict=False, later=True):
    """Greedy matching with switches for its mistakes."""
    num_detections, num_objects = ious.shape
    taken = torch.zeros(num_objects, dtype=torch.bool)
    matches = torch.full((num_detections,), -1, dtype=torch.int64)
    for d in range(num_detections):
        too_low = ious[d] <= threshold if strict else ious[d] < threshold
        candidates = torch.where((taken & once) | too_low, -1.0, ious[d])
        if num_objects == 0 or candidates.max() < 0:
            continue
        best = num_objects - 1 - int(candidates.flip(0).argmax()) if later else int(candidates.argmax())
        matches[d], taken[best] = best, True
    return matches


def precision_over_objects(is_true_positive, num_ground_truth):
    tp = torch.cumsum(is_true_positive.double(), 0)
    return tp / num_ground_truth, tp / num_ground_truth


def precision_not_cumulative(is_true_positive, num_ground_truth):
    tp = is_true_positive.double()
    return tp, torch.cumsum(tp, 0) / num_ground_truth


def ap(is_true_positive, num_ground_truth, envelope=True, levels=101):
    precision, recall = S.precision_recall(is_true_positive, num_ground_truth)
    if len(precision) == 0:
        return 0.0
    if envelope:
        precision = precision.flip(0).cummax(0).values.flip(0)
    first = torch.searchsorted(recall, torch.linspace(0, 1, levels, dtype=torch.float64))
    return float(torch.where(first < len(recall), precision[first.clamp(max=len(recall) - 1)], 0.0).mean())


def ap_area_at_hits(is_true_positive, num_ground_truth):
    precision, _ = S.precision_recall(is_true_positive, num_ground_truth)
    return float(precision[is_true_positive].sum() / num_ground_truth) if len(precision) else 0.0


MISTAKES = {
    "bilinear_sample": {
        "no zeros beyond the band": bilinear_clamped_everywhere,
        "zero padding instead of clamping": bilinear_zero_padded,
    },
    "roi_align_box": {
        "aligned ignored": lambda f, b, s, sc, r, a: align(f, b, s, sc, r, False),
        "points at the bins' corners": lambda f, b, s, sc, r, a: align(f, b, s, sc, r, a, point=0.0),
        "no one-cell minimum": lambda f, b, s, sc, r, a: align(f, b, s, sc, r, a, at_least_one_cell=False),
    },
    "roi_pool_box": {
        "Python's round (halves to even)": lambda f, b, s, sc: pool(f, b, s, sc, lambda v: int(round(v))),
        "edges floored": lambda f, b, s, sc: pool(f, b, s, sc, math.floor),
        "end cell left out": lambda f, b, s, sc: pool(f, b, s, sc, c_round, inclusive=False),
    },
    "box_iou": {
        "union without subtracting the intersection": iou_union_not_subtracted,
        "overlap not clamped at 0": iou_overlap_not_clamped,
    },
    "anchor_labels": {
        "low-quality rule left out": lambda iou, hi, lo: labels(iou, hi, lo, rule=False),
        "> high instead of >=": lambda iou, hi, lo: labels(iou, hi, lo, strict=True),
        "one best anchor per object, ties lost": lambda iou, hi, lo: labels(iou, hi, lo, ties=False),
    },
    "decode_boxes": {
        "weights left out": lambda d, a, w: decode(d, a, w, use_weights=False),
        "no clamp": lambda d, a, w: decode(d, a, w, clamp=False),
        "clamp before dividing by the weights": lambda d, a, w: decode(d, a, w, clamp_first=True),
    },
    "greedy_nms": {
        ">= where the rule is >": lambda b, s, t: nms(b, s, t, suppress_at_equal=True),
        "suppressed boxes suppress too": lambda b, s, t: nms(b, s, t, only_kept=False),
        "visited by index, not by score": lambda b, s, t: nms(b, s, t, by_score=False),
    },
    "level_top_k": {
        "one top-k over all levels": top_k_global,
        "indices within the level": top_k_no_offset,
        "not best first": top_k_index_order,
    },
    "objects_found": {"> where the rule is >=": found_strictly},
    "fpn_level": {
        "no clamp": lambda b, c: fpn(b, c, clamp=False),
        "area, not its root": lambda b, c: fpn(b, c, root=False),
        "rounded, not floored": lambda b, c: fpn(b, c, rounding=torch.round),
    },
    "class_nms": {
        "classes ignored": class_nms_ignoring_classes,
        "class by class, not by score": class_nms_class_by_class,
    },
    "smooth_l1": {
        "branches swapped": lambda p, t, b: smooth(p, t, b, swapped=True),
        "mean instead of sum": lambda p, t, b: smooth(p, t, b, reduce=torch.mean),
        "not divided by beta": lambda p, t, b: smooth(p, t, b, divide=False),
    },
    "box_loss": {
        "divided by the positives": box_loss_over_positives,
        "class 0's deltas": box_loss_first_class,
        "negatives regressed too": box_loss_with_negatives,
    },
    "mask_loss": {
        "every class's mask": mask_loss_all_classes,
        "sigmoid, then log": mask_loss_sigmoid_then_log,
        "softmax over the classes": mask_loss_softmax,
    },
    "tight_boxes": {"no + 1": tight_boxes_without_the_one, "rows for columns": tight_boxes_rows_for_columns},
    "hflip_sample": {
        "W - 1 - x": lambda i, t: hflip(i, t, minus_one=True),
        "edges not swapped": lambda i, t: hflip(i, t, swap=False),
        "flipped upside down": lambda i, t: hflip(i, t, dim=-2),
        "the given target changed": lambda i, t: hflip(i, t, in_place=True),
    },
    "resized_size": {
        "max_size ignored": lambda h, w, lo, hi: resized(h, w, lo, hi, limit=False),
        "rounded, not floored": lambda h, w, lo, hi: resized(h, w, lo, hi, rounding=round),
    },
    "cosine_lr_factor": {
        "cosine from step 0": lambda s, w, n, f: cosine(s, w, n, f, from_zero=True),
        "warm-up from 0": lambda s, w, n, f: cosine(s, w, n, f, start=0.0),
        "no cap past the end": lambda s, w, n, f: cosine(s, w, n, f, capped=False),
    },
    "step_lr_factor": {
        "> at a milestone": lambda s, w, f, m, g: step_factor(s, w, f, m, g, strict=True),
        "milestones in the warm-up": lambda s, w, f, m, g: step_factor(s, w, f, m, g, in_warmup=True),
    },
    "clip_gradients": {"each tensor clipped alone": clip_each, "scaled up under the limit": clip_always},
    "match_detections": {
        "an object taken twice": lambda i, t: match(i, t, once=False),
        "> where the rule is >=": lambda i, t: match(i, t, strict=True),
        "ties to the first object": lambda i, t: match(i, t, later=False),
    },
    "precision_recall": {
        "precision over the objects": precision_over_objects,
        "not cumulative": precision_not_cumulative,
    },
    "average_precision": {
        "no envelope": lambda t, n: ap(t, n, envelope=False),
        "11 points": lambda t, n: ap(t, n, levels=11),
        "precision summed at the hits": ap_area_at_hits,
    },
}


def test_every_exercise_has_a_typical_mistake():
    assert set(MISTAKES) == set(EXERCISES)


@pytest.mark.parametrize("name", NAMES)
def test_the_typical_mistakes_are_caught(name, capsys):
    for mistake, function in MISTAKES[name].items():
        right, out = verdict(name, function, capsys)
        assert not right, f"{mistake!r} passed: {out}"
        assert out.startswith(f"{name}: wrong on "), f"{mistake!r}: {out}"
