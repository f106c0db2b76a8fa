"""The project's set-up files agree with each other."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# conda names some packages differently from PyPI.
CONDA_NAME = {"torch": "pytorch"}


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[;\s]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [requirement_name(r) for r in project["dependencies"]]
    names += [requirement_name(r) for extra in project["optional-dependencies"].values() for r in extra]
    return set(names)


def conda_dependencies() -> set[str]:
    """Names listed under ``dependencies:`` in environment.yml (conda part, not the pip section)."""
    names = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        match = re.match(r"^  - ([A-Za-z0-9_.\-]+)", line)  # two spaces: top-level list items only
        if match:
            names.add(requirement_name(match.group(1)))
    return names


def test_environment_yml_names_every_pyproject_dependency():
    missing = {CONDA_NAME.get(name, name) for name in pyproject_dependencies()} - conda_dependencies()
    assert not missing, f"environment.yml lacks {sorted(missing)}"


def test_environment_yml_installs_the_package_itself():
    assert "-e .[dev]" in (ROOT / "environment.yml").read_text()


def test_readme_commands_are_the_ones_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ['pip install -e ".[dev]"', "pytest"]:
        assert command in readme, f"README lacks {command!r}"
        assert command in ci, f".ci/run lacks {command!r}"


def test_console_script_points_at_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["maskrcnn-edu"] == "maskrcnn_edu.cli:main"
