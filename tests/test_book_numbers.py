"""Prose agrees with output: a number a chapter's text quotes with two or more decimals is one that a
code cell or an output of the same chapter prints (rounded to the digits quoted), or one the list
below names with its source (a paper's number, a constant of the method)."""
import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
NUMBER = re.compile(r"(?<![\w.])\d+\.\d{2,}(?!\d)")

# Numbers a chapter may quote without printing them: chapter stem -> {number: where it comes from}.
QUOTED_FROM_ELSEWHERE: dict[str, dict[str, str]] = {
    "08_evaluation": {
        "0.812": "torchvision's MaskRCNN on our recipe, box AP (the race, data/shapes_model/README.md)",
        "0.789": "the same race, torchvision's mask AP",
    },
}


def _printed_text(notebook) -> str:
    """The code and every text output of a notebook's code cells."""
    parts = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts += [value for kind, value in output.get("data", {}).items()
                      if kind.startswith("text/") and isinstance(value, str)]
    return "\n".join(parts)


def _rounds_to(printed: str, quoted: str) -> bool:
    digits = len(quoted.split(".")[1])
    if len(printed.split(".")[1]) < digits:
        return False
    step = Decimal(1).scaleb(-digits)
    return any(Decimal(printed).quantize(step, rounding=mode) == Decimal(quoted)
               for mode in (ROUND_HALF_EVEN, ROUND_HALF_UP))


def unprinted_numbers(path: Path) -> list[str]:
    """``"cell 12: 0.844 (…context…)"`` for each number the prose quotes that nothing printed."""
    notebook = nbformat.read(path, as_version=4)
    printed = set(NUMBER.findall(_printed_text(notebook)))
    allowed = QUOTED_FROM_ELSEWHERE.get(path.stem, {})
    missing = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"\]\([^)]*\)", "]", cell.source).replace("\n", " ")  # not the numbers in links
        for match in NUMBER.finditer(text):
            quoted = match.group()
            if quoted in allowed or any(_rounds_to(p, quoted) for p in printed):
                continue
            context = text[max(0, match.start() - 50):match.end() + 20]
            missing.append(f"cell {index}: {quoted} (…{context}…)")
    return missing


@pytest.mark.parametrize("chapter", sorted(path.name for path in BOOK.glob("*.ipynb")))
def test_every_number_the_prose_quotes_is_printed_beside_it(chapter):
    assert unprinted_numbers(BOOK / chapter) == []


def test_the_check_finds_a_quoted_number_nothing_printed(tmp_path):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(0.8436)")
    cell.outputs = [nbformat.v4.new_output("stream", text="0.8436\n")]
    notebook.cells = [cell, nbformat.v4.new_markdown_cell("AP 0.844 and 0.843, [link](x_0.12.md)")]
    nbformat.write(notebook, tmp_path / "chapter.ipynb")
    found = unprinted_numbers(tmp_path / "chapter.ipynb")
    assert [line.split(" (")[0] for line in found] == ["cell 1: 0.843"]
