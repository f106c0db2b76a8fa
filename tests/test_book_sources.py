"""The library source a chapter shows is the library's source now: every stored ``show_source(...)``
output (file, lines and text) equals what the call gives today. A change to the library that moves
or alters a function a chapter shows fails here until the chapter is executed again."""
import ast
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(path.name for path in BOOK.glob("*.ipynb"))


def _imports(cells) -> str:
    """The chapter's import statements, to evaluate its ``show_source`` calls in."""
    statements = []
    for cell in cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # a cell of IPython magics
            tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.startswith("%")))
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        statements += [ast.unparse(node) for node in imports]
    return "\n".join(statements)


def shown_sources(chapter: str):
    """``(cell index, the call, the stored text)`` of each cell that is one ``show_source(...)`` call."""
    cells = nbformat.read(BOOK / chapter, as_version=4).cells
    for index, cell in enumerate(cells):
        if cell.cell_type != "code" or not cell.source.strip().startswith("show_source("):
            continue
        body = ast.parse(cell.source).body
        if len(body) != 1 or not isinstance(body[0], ast.Expr):
            continue
        stored = [output.data["text/plain"] for output in cell.outputs
                  if output.output_type == "execute_result"]
        yield index, cell.source.strip(), (stored[0] if stored else None)


@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if any(True for _ in shown_sources(c))])
def test_every_shown_source_is_the_librarys_source_now(chapter):
    namespace: dict = {}
    exec(_imports(nbformat.read(BOOK / chapter, as_version=4).cells), namespace)
    stale = [f"cell {index}: {call}" for index, call, stored in shown_sources(chapter)
             if stored != repr(eval(call, namespace))]
    assert not stale, f"{chapter} shows source that has changed since it was executed: {stale}"
