"""Chapter 05's exercises: smooth L1, the box head's regression loss, the mask loss."""
from __future__ import annotations

import torch
from torch import Tensor

from ..losses import box_head_loss, mask_loss, smooth_l1
from .checking import Case, Checker, Exercise, number

__all__ = ["EXERCISES", "CHECKS"]

SMOOTH_L1 = Exercise(
    name="smooth_l1",
    chapter="05",
    title="Smooth L1",
    task="""\
Write `smooth_l1(prediction, target, beta)`: the smooth L1 loss of section 3, **summed** over all
elements of two tensors of the same shape (any shape), as a 0-dim tensor. Per element, with
`x = |prediction - target|`:

    0.5 x² / beta   if x < beta,        x - 0.5 beta   otherwise.

With `beta = 0` it is plain L1; empty tensors give 0.

Example: `smooth_l1(torch.tensor([2.0, -5.0]), torch.zeros(2), 4.0)` is `tensor(3.5)`: `0.5 x 2² / 4` for
the first element, `5 - 0.5 x 4` for the second.""",
    stub='''\
import torch


def smooth_l1(prediction, target, beta):
    """Summed smooth L1 of prediction - target (same shape, any) -> 0-dim tensor."""
    raise NotImplementedError  # your turn
''',
    hint="""\
`torch.where(x < beta, quadratic, linear)` computes both branches and picks one per element, so a
`beta` of 0 needs no special case (the quadratic branch is never picked). Finish with `.sum()`.""",
)

BOX_LOSS = Exercise(
    name="box_loss",
    chapter="05",
    title="The box head's regression loss",
    task="""\
Write `box_loss(box_deltas, labels, target_deltas)`: the box head's `loss_box_reg` (section 2.4).
`box_deltas [R, K * 4]` holds four deltas per class for each sampled RoI (class `c` in columns
`4c .. 4c + 3`), `labels [R]` the RoI's class (0: background), `target_deltas [R, 4]` its regression
target. Sum the smooth L1 (beta = 1/9) over the **positive** RoIs only, on the deltas of each one's
**own** class, and divide by the number of **all** sampled RoIs, `R`. No positive RoI gives 0.

Example: with `box_deltas = torch.tensor([[9., 9., 9., 9., 0.5, 0., 0., 0.], [9.] * 8])`,
`labels = torch.tensor([1, 0])` and `target_deltas = torch.zeros(2, 4)`, the loss is
`(0.5 - 0.5 / 9) / 2`: only RoI 0 is positive, and it is read in class 1's columns.""",
    stub='''\
import torch


def box_loss(box_deltas, labels, target_deltas):
    """Smooth L1 (beta 1/9) of the own-class deltas of the positives / all RoIs -> 0-dim tensor.

    box_deltas [R, K * 4], labels [R] (0: background), target_deltas [R, 4].
    """
    raise NotImplementedError  # your turn
''',
    hint="""\
`box_deltas.reshape(R, -1, 4)` makes it `[R, K, 4]`; indexing it with `[positive, labels[positive]]`
picks each positive RoI's own class. Your `smooth_l1` sums; divide by `len(labels)`.""",
)

MASK_LOSS = Exercise(
    name="mask_loss",
    chapter="05",
    title="The mask loss",
    task="""\
Write `mask_loss(mask_logits, labels, mask_targets)`: Mask R-CNN's mask loss (section 5). For each
positive RoI, take the `M x M` logits of its own class from `mask_logits [P, K, M, M]` (class
`labels [P]`), and average the per-pixel **sigmoid** binary cross-entropy against `mask_targets
[P, M, M]` (values in 0..1, not only 0 and 1) over all `P x M x M` pixels; a 0-dim tensor. No positive
RoI (`P = 0`) gives 0. Large logits must give finite losses.

Example: one RoI, two classes, `M = 1`: logits `[[[[5.]], [[0.]]]]`, label `[1]`, target `[[[1.]]]`
read the class-1 logit 0 and give `log 2`.""",
    stub='''\
import torch
import torch.nn.functional as F


def mask_loss(mask_logits, labels, mask_targets):
    """Mean sigmoid BCE of each RoI's own-class mask: [P, K, M, M], [P], [P, M, M] -> 0-dim tensor."""
    raise NotImplementedError  # your turn
''',
    hint="""\
`mask_logits[torch.arange(P), labels]` is `[P, M, M]`. `F.binary_cross_entropy_with_logits` is
exact where `sigmoid` followed by a log would round a probability to 1 and take `log(0)`.""",
)


def _smooth_cases() -> list[Case]:
    cases = [Case("by hand", (torch.tensor([2.0, -5.0]), torch.zeros(2), 4.0)),
             Case("by hand", (torch.tensor([0.05, -0.5, 2.0]), torch.zeros(3), 1 / 9)),
             Case("beta 1", (torch.tensor([[0.5, 1.5]]), torch.zeros(1, 2), 1.0)),
             Case("beta 0 (plain L1)", (torch.tensor([0.3, -2.0]), torch.tensor([0.0, 0.5]), 0.0)),
             Case("empty", (torch.zeros(0, 4), torch.zeros(0, 4), 1 / 9))]
    for seed, beta in zip(range(3), (1 / 9, 1.0, 0.5)):
        generator = torch.Generator().manual_seed(seed)
        prediction, target = torch.randn(2, 16, 4, generator=generator)
        cases.append(Case("random", (prediction, target * 0.5, beta), f"seed {seed}"))
    return cases


def _box_reference(box_deltas: Tensor, labels: Tensor, target_deltas: Tensor) -> Tensor:
    class_logits = box_deltas.new_zeros(len(labels), box_deltas.shape[1] // 4)  # only the box loss is read
    return box_head_loss(class_logits, box_deltas, labels, target_deltas)[1]


def _box_cases() -> list[Case]:
    nines = [9.0] * 4
    cases = [Case("by hand", (torch.tensor([nines + [0.5, 0.0, 0.0, 0.0], nines * 2]), torch.tensor([1, 0]),
                              torch.zeros(2, 4))),
             Case("no positive RoI", (torch.ones(3, 8), torch.zeros(3, dtype=torch.int64),
                                      torch.zeros(3, 4))),
             Case("every RoI positive", (torch.arange(24.0).reshape(2, 12) / 10, torch.tensor([2, 1]),
                                         torch.ones(2, 4)))]
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(1, 4, (16,), generator=generator) * (torch.rand(16, generator=generator) < 0.3)
        deltas, targets = torch.randn(16, 16, generator=generator), torch.randn(16, 4, generator=generator)
        cases.append(Case("random", (deltas, labels, targets), f"seed {seed}, 4 classes"))
    return cases


def _mask_cases() -> list[Case]:
    one = torch.tensor([1])
    cases = [Case("by hand", (torch.tensor([[[[5.0]], [[0.0]]]]), one, torch.tensor([[[1.0]]]))),
             Case("by hand", (torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[2.0, -1.0], [0.0, 3.0]]]]),
                              torch.tensor([1]), torch.tensor([[[1.0, 0.0], [1.0, 0.25]]]))),
             Case("no positive RoI", (torch.zeros(0, 3, 4, 4), torch.zeros(0, dtype=torch.int64),
                                      torch.zeros(0, 4, 4))),
             Case("large logits", (torch.tensor([[[[0.0, 0.0]], [[30.0, -30.0]]]]), torch.tensor([1]),
                                   torch.tensor([[[0.0, 1.0]]])))]
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        logits = torch.randn(3, 4, 6, 6, generator=generator) * 3
        labels = torch.randint(1, 4, (3,), generator=generator)
        targets = torch.rand(3, 6, 6, generator=generator).mul(4).round().div(4)  # 0, 0.25, ..., 1
        cases.append(Case("random", (logits, labels, targets), f"seed {seed}, fractional targets"))
    return cases


EXERCISES = [SMOOTH_L1, BOX_LOSS, MASK_LOSS]
CHECKS = {
    "smooth_l1": Checker(SMOOTH_L1, smooth_l1, _smooth_cases, number(atol=1e-5, rtol=1e-5)),
    "box_loss": Checker(BOX_LOSS, _box_reference, _box_cases, number(atol=1e-5, rtol=1e-5)),
    "mask_loss": Checker(MASK_LOSS, mask_loss, _mask_cases, number(atol=1e-5, rtol=1e-5)),
}
