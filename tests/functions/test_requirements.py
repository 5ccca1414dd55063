"""Each function declares every package it imports, and its requirement file says what pyproject says."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "functions" / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Imported only when present, with a fallback (functions/common/loops.py): not a requirement.
OPTIONAL = {"uvloop"}
# Which requirement file each function's artifact installs (functions/Makefile, local/Dockerfile.infer).
ARTIFACTS = {"upload": "http", "query": "http", "collect": "base", "sweeper": "base", "infer": "infer"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _lines(file: str) -> list[str]:
    """A requirement file's own lines (``-r`` includes not followed)."""
    text = (REQUIREMENTS / f"{file}.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in text if line.split("#")[0].strip() and not line.startswith("-r")]


def _resolved(file: str) -> set[str]:
    names = {_name(line) for line in _lines(file)}
    for line in (REQUIREMENTS / f"{file}.txt").read_text().splitlines():
        if line.startswith("-r "):
            names |= _resolved(Path(line[3:].strip()).stem)
    return names


@pytest.mark.parametrize(
    ("file", "declared"),
    [
        ("base", PYPROJECT["project"]["dependencies"]),
        ("http", PYPROJECT["project"]["optional-dependencies"]["http"]),
        ("infer", PYPROJECT["project"]["optional-dependencies"]["infer"]),
    ],
)
def test_requirement_files_match_pyproject(file: str, declared: list[str]) -> None:
    assert sorted(_lines(file)) == sorted(line.split("#")[0].strip() for line in declared)


def test_the_store_tests_run_on_the_lowest_sqlalchemy_the_project_admits() -> None:
    """``make test-store-versions`` installs ``SQLALCHEMY_LOWEST``: it must be the range's own lower bound, and the
    range must have an upper bound (the newest release inside it is what .venv and the Lambda build install)."""
    lowest = re.search(r"^SQLALCHEMY_LOWEST := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert lowest is not None
    pinned = [d.split("#")[0].strip() for d in PYPROJECT["project"]["dependencies"] if _name(d) == "sqlalchemy"]
    assert pinned == [f"sqlalchemy>={lowest.group(1)},<2.2"]


def _module_file(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


def _imports(tree: ast.Module, package: str) -> set[str]:
    """Absolute module names imported anywhere in the file (lazy imports too), except under TYPE_CHECKING."""
    found: set[str] = set()
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    skipped = {id(n) for node in guarded for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _third_party_imports(function: str) -> set[str]:
    """Top-level third-party modules reachable from ``functions.<function>.app`` through our own modules."""
    todo, seen, external = [f"functions.{function}.app"], set(), set()
    while todo:
        module = todo.pop()
        path = _module_file(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for name in _imports(ast.parse(path.read_text()), package):
            top = name.split(".")[0]
            if top == "functions":
                todo.append(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return external


@pytest.mark.parametrize("function", sorted(ARTIFACTS))
def test_every_package_a_function_imports_is_in_its_artifact_requirements(function: str) -> None:
    distributions = importlib.metadata.packages_distributions()
    imported = _third_party_imports(function) - OPTIONAL
    needed = {_name(distributions[module][0]) for module in imported}
    missing = needed - _resolved(ARTIFACTS[function])
    assert not missing, (
        f"{function} imports {sorted(missing)} but functions/requirements/{ARTIFACTS[function]}.txt lacks them"
    )


def test_http_functions_never_need_torch() -> None:
    for function in ("upload", "query", "collect", "sweeper"):
        assert not {"torch", "torchvision"} & _third_party_imports(function)
        assert not {"torch", "torchvision"} & _resolved(ARTIFACTS[function])
