"""How an exercise is checked: the reader's function against the library's, case by case, one verdict.

A ``Checker`` holds an exercise's reference (the library's own implementation, behind the
exercise's simple signature), its cases (seeded random inputs and the edge cases where mistakes
show: empty inputs, ties, boxes outside the image, ...) and a comparison. Called with the
reader's function, it runs every case through both, stops at the first case where they differ,
prints one line that says what to fix, and returns True only when every case agreed:

    smooth_l1: not implemented yet
    smooth_l1: wrong on by hand (prediction=[2, -5], target=[0, 0], beta=4): expected 3.5, got 1.75
    smooth_l1: raised RuntimeError: ... on empty (prediction=float32 tensor of shape [0, 4], ...)
    smooth_l1: correct on 8 cases (by hand, beta 1, beta 0 (plain L1), empty, random)

Whatever the reader's function does (raise, return the wrong type or shape, NaN), the checker
prints a verdict and returns False; it never raises. The output holds no timing and no machine
detail, so a stored chapter's check cell reads the same on every run.
"""
from __future__ import annotations

import ast
import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["Exercise", "Case", "Checker", "tensors", "number", "show", "what_came", "box_rows",
           "random_boxes"]

SMALL = 16  # inputs and outputs with at most this many numbers are printed in full


@dataclass(frozen=True)
class Exercise:
    """One "your turn" exercise, as a chapter shows it.

    ``task``: markdown (what to write, shapes, conventions, an example); ``stub``: the Python source
    of the stub cell, whose function raises ``NotImplementedError``; ``hint``: markdown, 1-3 sentences.
    """

    name: str
    chapter: str  # "01" .. "08"
    title: str
    task: str
    stub: str
    hint: str

    @property
    def parameters(self) -> tuple[str, ...]:
        """The stub function's argument names, in order."""
        for node in ast.parse(self.stub).body:
            if isinstance(node, ast.FunctionDef) and node.name == self.name:
                return tuple(a.arg for a in node.args.args)
        raise ValueError(f"the stub of {self.name} defines no function {self.name}")


@dataclass
class Case:
    """One input: ``kind`` names it in the verdict ("random", "empty", "ties", ...); ``args`` are the
    arguments in the exercise's order; ``note`` adds a detail ("seed 3")."""

    kind: str
    args: tuple
    note: str = ""


@dataclass
class Checker:
    """Checks a reader's function for ``exercise`` against ``reference`` on ``cases()``.

    ``compare(expected, got)`` returns ``None`` when ``got`` is right, else what is wrong with it
    ("expected shape [2], got [3]"). ``cases`` is called on each check, so that every check builds
    its inputs afresh from their seeds.
    """

    exercise: Exercise
    reference: Callable
    cases: Callable[[], list[Case]]
    compare: Callable[[Any, Any], str | None] = field(default_factory=lambda: tensors())

    @property
    def name(self) -> str:
        return self.exercise.name

    def __call__(self, function: Callable) -> bool:
        """Print the verdict on ``function``; True only when it is right on every case."""
        verdict, right = self.verdict(function)
        print(verdict)
        return right

    def verdict(self, function: Callable) -> tuple[str, bool]:
        """The verdict line and whether ``function`` is right."""
        if not callable(function):
            return f"{self.name}: expected a function, got {type(function).__name__}", False
        cases = self.cases()
        for case in cases:
            expected = self.reference(*copy.deepcopy(case.args))
            given = copy.deepcopy(case.args)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    got = function(*given)
            except NotImplementedError:
                return f"{self.name}: not implemented yet", False
            except Exception as error:  # the reader's bug, reported, never raised
                return f"{self.name}: raised {_error(error)} on {self.describe(case)}", False
            try:
                problem = self.compare(expected, got) or self._changed(case.args, given)
            except Exception as error:  # a return value too odd to compare
                problem = f"returned {type(got).__name__}, which could not be compared ({_error(error)})"
            if problem:
                return f"{self.name}: wrong on {self.describe(case)}: {problem}", False
        kinds = ", ".join(dict.fromkeys(case.kind for case in cases))
        return f"{self.name}: correct on {len(cases)} cases ({kinds})", True

    def describe(self, case: Case) -> str:
        """``kind (name=value, ...)``: small inputs in full, large ones by their shape."""
        inputs = ", ".join(f"{name}={show(value, input=True)}"
                           for name, value in zip(self.exercise.parameters, case.args))
        note = f", {case.note}" if case.note else ""
        return f"{case.kind} ({inputs}{note})"

    def _changed(self, original: tuple, given: tuple) -> str | None:
        """Which argument (a tensor, or a list or dict of them) the function changed in place, if any."""
        for name, before, after in zip(self.exercise.parameters, original, given):
            if not _unchanged(before, after):
                return f"it changed its argument `{name}` in place (work on a copy)"
        return None


def _unchanged(before, after) -> bool:
    """Whether ``after`` still holds what ``before`` holds: tensors, and lists, tuples and dicts of them."""
    if isinstance(before, Tensor):
        return (isinstance(after, Tensor) and before.shape == after.shape
                and bool(((before == after) | (before != before) & (after != after)).all()))
    if isinstance(before, (list, tuple)):
        return len(before) == len(after) and all(_unchanged(b, a) for b, a in zip(before, after))
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(_unchanged(before[k], after[k]) for k in before)
    return True


def _error(error: Exception) -> str:
    message = " ".join(str(error).split())
    message = message if len(message) <= 160 else message[:157] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def box_rows(rows) -> Tensor:
    """Boxes written by hand, ``[[x0, y0, x1, y1], ...]`` -> float32 ``[N, 4]`` (``[]``: no box)."""
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def random_boxes(n: int, generator: torch.Generator, size: float = 64.0) -> Tensor:
    """``n`` random boxes ``[n, 4]`` with corners in ``[0, size]``: two random corners each, ordered."""
    corners = torch.rand(n, 2, 2, generator=generator) * size  # two (x, y) corners per box
    return torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)


# ---------------------------------------------------------------------------------------------
# Printing values readably
# ---------------------------------------------------------------------------------------------


def _number(value, digits: int) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.{digits}g}"


def _nested(values, digits: int) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v, digits) for v in values) + "]"
    return _number(values, digits)


def show(value, input: bool = False, digits: int = 4) -> str:
    """A value as a reader would write it: small tensors in full (4 significant digits), large ones
    as ``tensor of shape [30, 4]``; numbers, lists, tuples and dicts alike."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if isinstance(value, Tensor):
        if value.numel() > SMALL or value.numel() == 0:
            return f"{value.dtype} tensor of shape {list(value.shape)}".replace("torch.", "")
        return _nested(value.detach().cpu().tolist(), digits)
    if isinstance(value, (bool, int, float)):
        return _number(value, digits)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {show(v, input, digits)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        if len(value) > SMALL:
            return f"{type(value).__name__} of {len(value)} items"
        inner = ", ".join(show(v, input, digits) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return type(value).__name__ if input else repr(value)[:80]


def _shown_apart(expected, got) -> tuple[str, str]:
    """``expected`` and ``got`` printed with enough digits to tell them apart."""
    for digits in (4, 8):
        a, b = show(expected, digits=digits), show(got, digits=digits)
        if a != b:
            break
    return a, b


# ---------------------------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------------------------


def _as_tensor(value) -> Tensor | None:
    """A tensor, NumPy array, number or (nested) list as a CPU tensor; None for anything else."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, (np.ndarray, np.generic, bool, int, float, list, tuple)):
        try:
            return torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def what_came(value) -> str:
    """``None``, or ``a str``: what came back instead of a tensor or a number."""
    return "None" if value is None else f"a {type(value).__name__}"


def _kind_of(t: Tensor) -> str:
    if t.dtype == torch.bool:
        return "bool"
    return "float" if t.is_floating_point() else "int"


def _compare_tensor(expected, got, atol: float, rtol: float, kind: str | None) -> str | None:
    """What is wrong with ``got`` against ``expected`` (a tensor or array), or None."""
    expected = _as_tensor(expected)
    value = _as_tensor(got)
    if value is None:
        return f"expected a tensor of shape {list(expected.shape)}, got {what_came(got)}"
    if value.shape != expected.shape:
        wanted_shape, got_shape = f"shape {list(expected.shape)}", f"shape {list(value.shape)}"
        if 0 < expected.numel() <= SMALL:
            wanted_shape = f"{show(expected)} ({wanted_shape})"
        if 0 < value.numel() <= SMALL:
            got_shape = f"{show(value)} ({got_shape})"
        return f"expected {wanted_shape}, got {got_shape}"
    wanted = kind or _kind_of(expected)
    if wanted == "bool" and value.dtype != torch.bool:
        return f"expected a bool tensor, got {str(value.dtype).replace('torch.', '')}"
    if wanted == "int" and (value.is_floating_point() or value.is_complex()):
        return f"expected integers (int64), got {str(value.dtype).replace('torch.', '')}"
    if wanted == "float" and not value.is_floating_point():
        return f"expected floats (float32), got {str(value.dtype).replace('torch.', '')}"
    if expected.numel() == 0:
        return None
    if wanted == "float":
        expected64, value64 = expected.double(), value.double()
        close = torch.isclose(value64, expected64, rtol=rtol, atol=atol, equal_nan=True)
    else:
        close = value.long() == expected.long()
    if bool(close.all()):
        return None
    if expected.numel() <= SMALL:
        shown_expected, shown_got = _shown_apart(expected, value)
        return f"expected {shown_expected}, got {shown_got}"
    where = [int(i) for i in torch.nonzero(~close)[0]]
    shown_expected, shown_got = _shown_apart(expected[tuple(where)], value[tuple(where)])
    return (f"at index {where} (of shape {list(expected.shape)}) expected {shown_expected}, "
            f"got {shown_got}")


def tensors(atol: float = 1e-5, rtol: float = 1e-4, kind: str | None = None) -> Callable:
    """Compare as tensors: same shape, values within ``atol + rtol |expected|`` (exactly for integers
    and bools). ``kind`` ("float", "int", "bool") asks for that kind of values; by default the
    reference's."""
    def compare(expected, got) -> str | None:
        return _compare_tensor(expected, got, atol, rtol, kind)
    return compare


def number(atol: float = 1e-6, rtol: float = 1e-5) -> Callable:
    """Compare a single number: a Python number or a tensor with one element, within tolerance."""
    def compare(expected, got) -> str | None:
        value = _as_tensor(got)
        if value is None or value.dim() != 0:
            shape = f"shape {list(value.shape)}" if value is not None else what_came(got)
            return f"expected one number ({show(expected)}), got {shape}"
        return _compare_tensor(torch.tensor(float(expected), dtype=torch.float64), value.reshape(()).double(),
                               atol, rtol, "float")
    return compare
