"""The package's layout is a map of Mask R-CNN, and these tests hold its rules (``docs/design.md``).

* The model path (the modules a forward pass runs, and the few it needs) imports only torch,
  torchvision, the standard library and itself, and runs a forward pass with the teaching and
  training tools (matplotlib, ipywidgets, pycocotools, tqdm, tensorboard, IPython) unimportable.
* ``visualize/`` draws with matplotlib and never imports ipywidgets; ``training/`` never imports
  ``visualize`` (it draws through a callback it is given); the chapters take the Shapes recipe
  from ``training``, not from ``cli``; ``cli.py`` holds the command line only.
* Sizes a reader can hold: no module over 500 lines, no function over 40 lines unless a comment
  right above it says why, no line over 110 characters (ruff, configured in ``pyproject.toml``).
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "maskrcnn_edu"

MODEL_PATH = ("config", "model", "inputs", "transform", "backbone", "anchors", "boxes", "matching", "rpn",
              "roi_ops", "roi_heads", "mask_heads", "masks", "losses", "weights", "reference", "files",
              "distributed", "coco_names")
BUILT_ON_THE_MODEL = ("data", "training", "evaluation", "visualize", "explorers", "cli")
TOOLS = ("matplotlib", "ipywidgets", "pycocotools", "tqdm", "tensorboard", "IPython")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, as an absolute dotted name."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])  # e.g. maskrcnn_edu.training
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import roi_ops`
    return names


def package_files(*parts: str) -> list[Path]:
    return sorted((PACKAGE.joinpath(*parts)).rglob("*.py")) if parts else sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", MODEL_PATH)
def test_the_model_path_imports_only_torch_torchvision_the_standard_library_and_itself(module):
    allowed_roots = {"torch", "torchvision", "maskrcnn_edu", *sys.stdlib_module_names}
    imports = imported_modules(PACKAGE / f"{module}.py")
    foreign = sorted(name for name in imports if name.split(".")[0] not in allowed_roots)
    assert not foreign, f"{module}.py imports {foreign}"
    upward = sorted(name for name in imports
                    if name.startswith("maskrcnn_edu.") and name.split(".")[1] in BUILT_ON_THE_MODEL)
    assert not upward, f"{module}.py imports what is built on the model: {upward}"


# A module set to None in sys.modules cannot be imported ("import of X halted"), and
# importlib.util.find_spec(X) answers None, as for a package that is not installed (torch asks so).
BLOCK_TOOLS = """
import sys
BLOCKED = {blocked!r}
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
for name in BLOCKED:
    sys.modules[name] = None
"""

FORWARD_PASS = """
import torch
from maskrcnn_edu import MaskRCNN, shapes
torch.manual_seed(0)
model = MaskRCNN(shapes())
image = torch.rand(3, 64, 80)
target = {"boxes": torch.tensor([[10.0, 12.0, 40.0, 50.0]]), "labels": torch.tensor([1]),
          "masks": torch.zeros(1, 64, 80, dtype=torch.uint8)}
target["masks"][0, 12:50, 10:40] = 1
losses = model.train()([image], [target])
detections = model.eval()([image])
trace = model.trace(image)
print(sorted(losses), sorted(detections[0]), len(trace.features))
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_forward_pass_runs_with_the_teaching_and_training_tools_unimportable():
    result = run_python(BLOCK_TOOLS.format(blocked=TOOLS) + FORWARD_PASS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loss_mask" in result.stdout and "masks" in result.stdout


def test_the_block_does_block():
    """The test above would prove nothing if the blocker let the tools through."""
    result = run_python(BLOCK_TOOLS.format(blocked=TOOLS) + "import matplotlib")
    assert result.returncode != 0 and "import of matplotlib halted" in result.stderr


def test_visualize_never_imports_ipywidgets():
    for path in package_files("visualize"):
        assert not any(name.startswith("ipywidgets") for name in imported_modules(path)), path.name
    block = BLOCK_TOOLS.format(blocked=("ipywidgets", "IPython"))
    result = run_python(block + "import maskrcnn_edu.visualize")
    assert result.returncode == 0, result.stderr[-2000:]


def test_training_draws_through_a_callback_and_never_imports_visualize():
    for path in package_files("training"):
        imports = imported_modules(path)
        assert not any(name.startswith("maskrcnn_edu.visualize") for name in imports), path.name
        assert not any(name.startswith("maskrcnn_edu.explorers") for name in imports), path.name
    block = BLOCK_TOOLS.format(blocked=("matplotlib", "ipywidgets"))
    result = run_python(block + "import maskrcnn_edu.training")
    assert result.returncode == 0, result.stderr[-2000:]


def test_nothing_but_the_command_line_imports_cli():
    for path in package_files():
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert "maskrcnn_edu.cli" not in imported_modules(path), path.relative_to(ROOT)


def test_cli_holds_the_command_line_only_and_the_chapters_take_the_recipe_from_training():
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert not defined & {"shapes_schedule", "coco_schedule", "shapes_training_set"}
    recipe = re.compile(r"\bcli\.(shapes_schedule|coco_schedule|shapes_training_set|SHAPES_[A-Z_]+)")
    for chapter in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(chapter.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert not recipe.search("".join(cell["source"])), chapter.name


def why_comment_above(lines: list[str], node: ast.AST) -> bool:
    first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    return lines[first - 2].strip().startswith("#")


def test_modules_and_functions_are_sizes_a_reader_can_hold():
    too_long = []
    for path in package_files():
        lines = path.read_text().split("\n")
        name = path.relative_to(ROOT)
        if len(lines) > 500:
            too_long.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                size = node.end_lineno - first + 1
                if size > 40 and not why_comment_above(lines, node):
                    too_long.append(f"{name}: {node.name} is {size} lines")
            if isinstance(node, ast.ClassDef) and node.name == "RoIHeads":
                assert node.end_lineno - node.lineno + 1 < 150, "RoIHeads should stay under 150 lines"
    assert not too_long, "\n".join(too_long)


def test_the_linter_holds_the_line_length():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: `pip install -e .[dev]` installs it")
    result = subprocess.run([ruff, "check", "maskrcnn_edu", "tests", "benchmarks", "conftest.py"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def public_functions(tree: ast.Module, prefix: str = ""):
    """``(name, node)`` for every public function and method of a module (``__init__``/``__call__`` too)."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield from public_functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.FunctionDef) and (not node.name.startswith("_")
                                                    or node.name in ("__init__", "__call__")):
            yield prefix + node.name, node


@pytest.mark.parametrize("module", MODEL_PATH)
def test_every_public_function_of_the_model_path_is_typed_and_documented(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    untyped = []
    for name, node in public_functions(tree):
        arguments = [a for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                     if a.arg not in ("self", "cls")]
        arguments += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
        missing = [a.arg for a in arguments if a.annotation is None]
        if node.returns is None and node.name != "__init__":
            missing.append("return")
        if ast.get_docstring(node) is None and node.name != "__init__":
            missing.append("docstring")
        if missing:
            untyped.append(f"{name}: {', '.join(missing)}")
    assert not untyped, f"{module}.py: " + "; ".join(untyped)
