"""The book's "Your turn" exercises: the reader writes the idea a chapter taught, a checker verifies it.

Each chapter 01-08 ends with two or three exercises. A stub cell (tagged ``exercise``) holds the
function to write; the next cell runs ``check("box_iou", box_iou)``, which tests it against the
library's own implementation on seeded random inputs and on the edge cases where mistakes show,
prints one verdict and returns True only when the function is right. ``book/solutions.py`` holds a
worked answer to each.

* ``EXERCISES``: name -> ``Exercise`` (chapter, title, task, stub, hint), what a chapter shows;
* ``CHECKS``: name -> checker, a callable ``checker(function) -> bool``;
* ``check(name, function)``: the checker of ``name`` called on ``function``.

One module per chapter (``ch01_roi_align`` ... ``ch08_evaluation``) holds its exercises and their
checks; ``checking`` holds what they share.
"""
from __future__ import annotations

from typing import Callable

from . import (ch01_roi_align, ch02_anchors, ch03_rpn, ch04_heads, ch05_losses, ch06_data, ch07_training,
               ch08_evaluation)
from .checking import Case, Checker, Exercise

__all__ = ["EXERCISES", "CHECKS", "check", "Exercise", "Checker", "Case"]

_CHAPTERS = (ch01_roi_align, ch02_anchors, ch03_rpn, ch04_heads, ch05_losses, ch06_data, ch07_training,
             ch08_evaluation)

EXERCISES: dict[str, Exercise] = {e.name: e for chapter in _CHAPTERS for e in chapter.EXERCISES}
CHECKS: dict[str, Checker] = {name: c for chapter in _CHAPTERS for name, c in chapter.CHECKS.items()}


def check(name: str, function: Callable) -> bool:
    """Check the reader's ``function`` for the exercise ``name``: print a verdict, True when it is right."""
    if name not in CHECKS:
        raise ValueError(f"no exercise named {name!r}; the exercises are {', '.join(CHECKS)}")
    return CHECKS[name](function)
