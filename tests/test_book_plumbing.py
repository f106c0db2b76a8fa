"""Test plumbing stays out of the reader's sight: the cells whose printed output nbval compares carry
nbval's cell tag (``nbval-check-output``) in their metadata, not a marker comment in their source; a
chapter sizes its short run with ``full_or_short`` and its prose says nothing of what the tests do."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(path.name for path in BOOK.glob("*.ipynb"))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_checked_cells_are_tagged_and_no_source_carries_a_marker(chapter):
    notebook = nbformat.read(BOOK / chapter, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [cell.source[:60] for cell in code if "NBVAL" in cell.source]
    assert any("nbval-check-output" in cell.metadata.get("tags", []) for cell in code)


# Phrases that speak of the book's checks rather than of Mask R-CNN ("the test images" and "the test
# set" are about the data and stay).
ABOUT_THE_CHECKS = re.compile(r"\bthe tests\b|\btest suite\b|\btests/|\btest run\b|\bnbval\b|SMOKE",
                              re.IGNORECASE)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_cell_speaks_of_the_books_checks(chapter):
    notebook = nbformat.read(BOOK / chapter, as_version=4)
    found = [match.group(0) + ": " + cell.source[max(0, match.start() - 40): match.end() + 40]
             for cell in notebook.cells for match in ABOUT_THE_CHECKS.finditer(cell.source)]
    assert not found


def _nbval(tmp_path: Path, stored: str, tags: tuple = ("nbval-check-output",)) -> int:
    """Run nbval on a one-cell notebook that prints 1, with ``tags``, whose stored output is ``stored``."""
    cell = nbformat.v4.new_code_cell("print(1)", metadata={"tags": list(tags)}, execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", text=stored)]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "tagged.ipynb")
    command = [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider", "tagged.ipynb"]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True).returncode


def test_nbval_compares_the_output_of_a_tagged_cell(tmp_path):
    assert _nbval(tmp_path, "1\n") == 0
    assert _nbval(tmp_path, "2\n") != 0
    assert _nbval(tmp_path, "2\n", tags=()) == 0  # untagged, --nbval-lax does not compare: the tag did


def test_every_paper_a_chapter_links_is_in_the_tours_bibliography():
    arxiv = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})")
    linked = {}
    for chapter in CHAPTERS:
        for cell in nbformat.read(BOOK / chapter, as_version=4).cells:
            if cell.cell_type == "markdown":
                for paper in arxiv.findall(cell.source):
                    linked.setdefault(paper, set()).add(chapter)
    tour = nbformat.read(BOOK / "00_tour.ipynb", as_version=4)
    bibliography = next(cell.source.split("## 8. Bibliography", 1)[1] for cell in tour.cells
                        if "## 8. Bibliography" in cell.source)
    missing = {paper: sorted(chapters) for paper, chapters in linked.items()
               if paper not in arxiv.findall(bibliography)}
    assert not missing
