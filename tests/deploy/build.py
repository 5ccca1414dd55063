"""Stock `sam build` as the README has it run: from a clean copy of the tracked files (no venv, no caches, no
earlier build), without Docker, with the project's venv first on PATH as `make setup` leaves it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def sam_binary() -> Path:
    """aws-sam-cli: in the build tools' venv where `make setup` puts it, else beside this interpreter."""
    for candidate in (ROOT / ".venv-tools" / "bin" / "sam", VENV_BIN / "sam"):
        if candidate.exists():
            return candidate
    raise AssertionError("aws-sam-cli is a dev tool (make setup); no sam in .venv-tools/bin or beside python")


def tools_python() -> Path:
    """The build tools' python (aws-sam-translator, cfn-lint: `make setup` puts them in .venv-tools)."""
    candidate = sam_binary().with_name("python")
    if not candidate.exists():
        raise AssertionError(f"no python beside {sam_binary()}: run make setup")
    return candidate


def checkout(destination: Path) -> Path:
    """The tracked (and new, unignored) files of the work tree, copied to ``destination``: what a clone holds."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for name in files.stdout.splitlines():
        if name.split("/")[0].startswith((".venv", ".aws-sam")):  # tool venvs and builds, ignored or not
            continue
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


def sam_build(
    source: Path, build_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    """`sam build --build-dir build_dir *args` in ``source``: SAM's state in a fresh HOME, pip's wheel cache
    shared (downloads are not what is tested), PROJECT_PYTHON passed on when set (functions/Makefile)."""
    home = build_dir.parent / "home"
    home.mkdir(parents=True, exist_ok=True)
    passed = {key: os.environ[key] for key in ("PROJECT_PYTHON", "PIP_CACHE_DIR") if key in os.environ}
    compile_with = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))  # what the Makefile looks for
    if compile_with:
        passed["COMPILE_PYTHON"] = str(compile_with[0])
    return subprocess.run(
        [str(sam_binary()), "build", "--build-dir", str(build_dir), *args],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "HOME": str(home),
            "SAM_CLI_TELEMETRY": "0",
            "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip"),
            **passed,
            **(env or {}),
        },
    )
