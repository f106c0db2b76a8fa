"""What the chapters need that is about the book, not about Mask R-CNN: showing the library's source,
and running a chapter short.

``show_source(paste_masks)`` shows a function as the chapter's reader should see it: highlighted,
without its docstring (the prose beside it says what it does), at most ``MAX_LINES`` lines, with
the file and line numbers it comes from. ``start=`` / ``stop=`` keep only the lines that carry the
chapter's idea; the lines left out are marked ``...``.
"""
from __future__ import annotations

import ast
import html
import inspect
import os
import textwrap
from pathlib import Path

__all__ = ["MAX_LINES", "SHORT_RUN_VARIABLE", "Source", "full_or_short", "show_source"]

MAX_LINES = 30  # a reader takes in about a screenful; a longer printout is skimmed, not read
SHORT_RUN_VARIABLE = "MASKRCNN_EDU_SMOKE"  # "1" in the book's checks (nbval in CI)


def full_or_short(full, short):
    """``full`` when a reader runs the chapter; ``short`` when the book's checks run it.

    The checks execute every chapter on every change, so a chapter's long loops (training steps,
    images scored, timing repeats) take their short size there; the stored outputs are a full run.
    """
    return short if os.environ.get(SHORT_RUN_VARIABLE) == "1" else full


class Source:
    """Lines of the library's source, shown highlighted in a notebook and as plain text elsewhere."""

    def __init__(self, text: str, title: str):
        self.text, self.title = text, title

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.text}"

    def _repr_html_(self) -> str:
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import PythonLexer
        except ImportError:  # pygments comes with Jupyter; without it, plain text
            body = f"<pre>{html.escape(self.text)}</pre>"
        else:
            body = highlight(self.text, PythonLexer(), HtmlFormatter(noclasses=True, style="friendly",
                                                                     cssstyles="padding: 0.4em 0.8em",
                                                                     prestyles="font-family: monospace"))
        return (f'<div style="font-size: 90%; color: #555; margin: 0.2em 0">{html.escape(self.title)}</div>'
                f"{body}")


def show_source(obj, start: str | None = None, stop: str | None = None, docstring: bool = False,
                max_lines: int = MAX_LINES) -> Source:
    """The source of a function, method or class of the library, to show in a chapter.

    ``start``: keep the lines from the first one containing this text (the ``def`` line is kept
    too); ``stop``: up to and including the first line after it containing this text. The
    docstring is left out unless ``docstring=True``. More than ``max_lines`` lines is an error,
    so that no chapter prints a page of code: choose the lines that carry the idea.
    """
    lines, first_number = inspect.getsourcelines(obj)
    lines = textwrap.dedent("".join(lines)).splitlines()
    numbers = list(range(first_number, first_number + len(lines)))
    if not docstring:
        lines, numbers = _without_docstring(lines, numbers)
    head = _signature_end(lines)  # the def line(s) always show what is being read
    begin = head if start is None else _find(lines, start, head, obj)
    end = len(lines) if stop is None else _find(lines, stop, begin, obj) + 1
    kept = list(range(head)) + list(range(max(begin, head), end))
    shown = []
    for previous, index in zip([None] + kept, kept):
        if previous is not None and index != previous + 1:
            shown.append(_indent_of(lines[index]) + "...")
        shown.append(lines[index])
    if end < len(lines):
        shown.append(_indent_of(lines[end - 1]) + "...")
    if len(shown) > max_lines:
        raise ValueError(f"show_source({obj.__qualname__}): {len(shown)} lines, more than {max_lines}; "
                         f"keep the lines that carry the idea with start= and stop=")
    path = Path(inspect.getsourcefile(obj))
    package = Path(__file__).resolve().parent
    where = path.resolve().relative_to(package.parent) if package in path.resolve().parents else path.name
    title = f"{where} · {obj.__qualname__} (lines {numbers[kept[0]]}–{numbers[kept[-1]]})"
    return Source("\n".join(shown), title)


def _without_docstring(lines: list[str], numbers: list[int]) -> tuple[list[str], list[int]]:
    """``lines`` of one definition without the lines of its docstring."""
    tree = ast.parse("\n".join(lines))
    definition = tree.body[0]
    body = getattr(definition, "body", [])
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return lines, numbers
    drop = set(range(body[0].lineno - 1, body[0].end_lineno))
    keep = [i for i in range(len(lines)) if i not in drop]
    return [lines[i] for i in keep], [numbers[i] for i in keep]


def _signature_end(lines: list[str]) -> int:
    """How many lines the decorators and the ``def``/``class`` line(s) take."""
    definition = ast.parse("\n".join(lines)).body[0]
    body = getattr(definition, "body", None)
    return body[0].lineno - 1 if body else len(lines)


def _find(lines: list[str], text: str, after: int, obj) -> int:
    for index in range(after, len(lines)):
        if text in lines[index]:
            return index
    raise ValueError(f"show_source({obj.__qualname__}): no line contains {text!r}")


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]
