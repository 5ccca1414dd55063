"""Every benchmark runs end to end at tiny sizes and prints its table (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_run_all_quick_prints_every_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for title in (
        "Model limit",
        "Pipeline end to end",
        "HTTP functions",
        "Cold start",
        "Infer worker memory",
        "Targets",
    ):
        assert f"## {title}" in done.stdout, done.stdout
    assert "pipeline / best limit layout" in done.stdout
    assert "torch loaded" in done.stdout and " upload " in done.stdout
