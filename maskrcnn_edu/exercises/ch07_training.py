"""Chapter 07's exercises: the learning-rate schedule (warm-up, then cosine or steps), gradient clipping."""
from __future__ import annotations

import torch
from torch import Tensor

from ..training import TrainSettings, lr_factor
from .checking import Case, Checker, Exercise, number, show, tensors

__all__ = ["EXERCISES", "CHECKS"]

COSINE_LR_FACTOR = Exercise(
    name="cosine_lr_factor",
    chapter="07",
    title="Warm-up, then a half cosine",
    task="""\
Write `cosine_lr_factor(step, warmup_steps, steps, warmup_factor)`: the multiplier of the base
learning rate at `step` in the Shapes recipe's schedule (section 4), as a float:

- during the warm-up (`step < warmup_steps`) it rises linearly from `warmup_factor` at step 0 towards 1:
  `warmup_factor (1 - a) + a` with `a = step / warmup_steps`;
- then a half cosine from 1 to 0 over the remaining steps: `0.5 (1 + cos(pi p))` with progress
  `p = (step - warmup_steps) / max(1, steps - warmup_steps)`, and `p` at most 1 (past the last step
  the factor stays 0).

Example: `cosine_lr_factor(450, 50, 850, 0.1)` is `0.5` (halfway through the cosine).""",
    stub='''\
import math


def cosine_lr_factor(step, warmup_steps, steps, warmup_factor):
    """The multiplier of the base lr at step: linear warm-up, then a half cosine to 0 at steps."""
    raise NotImplementedError  # your turn
''',
    hint="""\
Two branches: `if step < warmup_steps: ...` and the cosine. `min(1.0, progress)` keeps the factor at
0 after the last step instead of climbing back up.""",
)

STEP_LR_FACTOR = Exercise(
    name="step_lr_factor",
    chapter="07",
    title="Warm-up, then steps",
    task="""\
Write `step_lr_factor(step, warmup_steps, warmup_factor, milestones, gamma)`: the multiplier of the
base learning rate in the COCO recipe's schedule (section 4), as a float. The warm-up is as in
`cosine_lr_factor`; after it, the factor is `gamma ** m`, where `m` counts the milestones that `step`
has reached (`step >= milestone`).

Example: `step_lr_factor(16000, 1000, 0.1, (16000, 22000), 0.1)` is `0.1`.""",
    stub='''\
def step_lr_factor(step, warmup_steps, warmup_factor, milestones, gamma):
    """The multiplier of the base lr at step: linear warm-up, then x gamma at each milestone reached."""
    raise NotImplementedError  # your turn
''',
    hint="`sum(step >= m for m in milestones)` counts the milestones reached.",
)

CLIP_GRADIENTS = Exercise(
    name="clip_gradients",
    chapter="07",
    title="Clipping the gradient norm",
    task="""\
Write `clip_gradients(gradients, max_norm)`, what `clip_grad_norm_` does in a training step (section
1) but without changing its input: `gradients` is a list of tensors (one per parameter). Their
**total** norm is the square root of the sum of the squares of all their elements together. If it
exceeds `max_norm`, scale every gradient by `max_norm / total`; otherwise leave them as they are.
Return `(clipped, total)`: the list of new tensors and the total norm *before* clipping, as a float.

Example: `clip_gradients([torch.tensor([3.0]), torch.tensor([0.0, 4.0])], 1.0)` returns
`([tensor([0.6]), tensor([0., 0.8])], 5.0)`.""",
    stub='''\
import torch


def clip_gradients(gradients, max_norm):
    """Scale the gradients (a list of tensors) so their total norm is at most max_norm -> (list, norm)."""
    raise NotImplementedError  # your turn
''',
    hint="""\
The total norm is `sum(g.pow(2).sum() for g in gradients) ** 0.5`: one norm over all parameters, not
one per tensor. The factor is `min(1, max_norm / total)`.""",
)


def _cosine_reference(step: int, warmup_steps: int, steps: int, warmup_factor: float) -> float:
    settings = TrainSettings(steps=steps, warmup_steps=warmup_steps, warmup_factor=warmup_factor,
                             schedule="cosine")
    return lr_factor(step, settings)


def _cosine_cases() -> list[Case]:
    shapes_recipe = (50, 850, 0.001)
    cases = [Case("by hand", (step, *shapes_recipe)) for step in (0, 25, 50, 450, 650, 850)]
    cases += [Case("past the last step", (900, *shapes_recipe)),
              Case("no warm-up", (0, 0, 100, 0.001)), Case("no warm-up", (30, 0, 100, 0.001)),
              Case("all warm-up", (10, 10, 10, 0.1))]
    generator = torch.Generator().manual_seed(0)
    for step in torch.randint(0, 1100, (6,), generator=generator).tolist():
        cases.append(Case("random", (step, 100, 1000, 0.01), "seed 0"))
    return cases


def _step_reference(step: int, warmup_steps: int, warmup_factor: float, milestones, gamma: float) -> float:
    settings = TrainSettings(warmup_steps=warmup_steps, warmup_factor=warmup_factor, schedule="step",
                             lr_milestones=tuple(milestones), gamma=gamma)
    return lr_factor(step, settings)


def _step_cases() -> list[Case]:
    coco = (1000, 0.001, (16000, 22000), 0.1)
    cases = [Case("by hand", (step, *coco)) for step in (0, 500, 1000, 15999)]
    cases += [Case("on a milestone", (16000, *coco)), Case("on a milestone", (22000, *coco)),
              Case("past the milestones", (30000, *coco)),
              Case("a milestone inside the warm-up", (50, 100, 0.01, (20, 200), 0.5)),
              Case("no milestones", (300, 100, 0.01, (), 0.1))]
    generator = torch.Generator().manual_seed(0)
    for step in torch.randint(0, 25000, (6,), generator=generator).tolist():
        cases.append(Case("random", (step, *coco), "seed 0"))
    return cases


def _clip_reference(gradients: list[Tensor], max_norm: float) -> tuple[list[Tensor], float]:
    # What fit's training step calls: torch.nn.utils.clip_grad_norm_, on parameters holding copies.
    parameters = [torch.zeros_like(g, requires_grad=True) for g in gradients]
    for parameter, gradient in zip(parameters, gradients):
        parameter.grad = gradient.clone()
    total = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    return [p.grad for p in parameters], float(total)


def _compare_clipped(expected: tuple, got) -> str | None:
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and isinstance(got[0], (list, tuple))):
        return f"expected a pair (list of gradients, norm), got {show(got)}"
    problem = number()(expected[1], got[1])
    if problem:
        return f"the norm: {problem}"
    if len(got[0]) != len(expected[0]):
        return f"expected {len(expected[0])} gradients, got {len(got[0])}"
    for k, (wanted, gradient) in enumerate(zip(expected[0], got[0])):
        problem = tensors(atol=1e-6, rtol=1e-4)(wanted, gradient)
        if problem:
            return f"gradient {k}: {problem}"
    return None


def _clip_cases() -> list[Case]:
    cases = [Case("by hand", ([torch.tensor([3.0]), torch.tensor([0.0, 4.0])], 1.0)),
             Case("norm under the limit", ([torch.tensor([3.0]), torch.tensor([0.0, 4.0])], 10.0)),
             Case("a zero gradient", ([torch.zeros(2, 2), torch.tensor([-6.0, 8.0])], 5.0))]
    for seed, max_norm in zip(range(3), (10.0, 1.0, 100.0)):
        generator = torch.Generator().manual_seed(seed)
        gradients = [torch.randn(shape, generator=generator) * 3 for shape in [(8, 3, 3), (8,), (4, 8)]]
        cases.append(Case("random", (gradients, max_norm), f"seed {seed}"))
    return cases


EXERCISES = [COSINE_LR_FACTOR, STEP_LR_FACTOR, CLIP_GRADIENTS]
CHECKS = {
    "cosine_lr_factor": Checker(COSINE_LR_FACTOR, _cosine_reference, _cosine_cases, number(atol=1e-9)),
    "step_lr_factor": Checker(STEP_LR_FACTOR, _step_reference, _step_cases, number(atol=1e-9)),
    "clip_gradients": Checker(CLIP_GRADIENTS, _clip_reference, _clip_cases, _compare_clipped),
}
