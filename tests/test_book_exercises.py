"""Chapters 01-08 end with their "Your turn" exercises: each a stub cell tagged ``exercise`` as
``maskrcnn_edu.exercises`` defines it, the cell that checks it (stored with the stub's verdict), and
a collapsible hint with a link to the worked answer; then the questions, each with a collapsible
worked answer."""
from pathlib import Path

import nbformat
import pytest

from maskrcnn_edu.exercises import EXERCISES

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(path.name for path in BOOK.glob("0[1-8]_*.ipynb"))


def test_every_chapter_from_01_to_08_has_exercises():
    assert [name[:2] for name in CHAPTERS] == [f"{n:02d}" for n in range(1, 9)]
    assert {exercise.chapter for exercise in EXERCISES.values()} == {name[:2] for name in CHAPTERS}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_stub_is_the_exercises_and_is_followed_by_its_check_and_hint(chapter):
    cells = nbformat.read(BOOK / chapter, as_version=4).cells
    expected = [exercise for exercise in EXERCISES.values() if exercise.chapter == chapter[:2]]
    stubs = [i for i, cell in enumerate(cells) if "exercise" in cell.metadata.get("tags", [])]
    assert [cells[i].source.strip() for i in stubs] == [exercise.stub.strip() for exercise in expected]
    for i, exercise in zip(stubs, expected):
        check, hint = cells[i + 1], cells[i + 2]
        assert f'check("{exercise.name}", {exercise.name})' in check.source
        assert "nbval-check-output" in check.metadata.get("tags", [])
        printed = "".join(output.get("text", "") for output in check.outputs).strip()
        assert printed == f"{exercise.name}: not implemented yet"
        assert "<details><summary>Hint</summary>" in hint.source and "(solutions.py)" in hint.source


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_chapter_ends_with_summary_your_turn_and_questions_with_worked_answers(chapter):
    cells = nbformat.read(BOOK / chapter, as_version=4).cells
    headings = [cell.source.lstrip().split("\n")[0] for cell in cells
                if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## ")]
    assert headings[-3:] == ["## Summary", "## Your turn", "## Questions"]
    questions = cells[-1].source
    assert questions.lstrip().startswith("## Questions")
    assert questions.count("<details><summary>Answer</summary>") >= 2
