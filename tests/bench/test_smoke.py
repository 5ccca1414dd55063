"""Every benchmark runs end to end at tiny sizes and prints its table (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("local_stack")  # the benches start stacks

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
    kept = {p.name: p.stat().st_mtime for p in (ROOT / "bench" / "results").iterdir()}
    for title in (
        "efficientnet_lite0:DEFAULT: 16 augmented photos",
        "Decode + preprocess",
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
    assert "default engine, top-1 agreement with eager fp32" in done.stdout
    assert {p.name: p.stat().st_mtime for p in (ROOT / "bench" / "results").iterdir()} == kept  # quick: not kept


def test_hostile_bench_prints_each_image_and_flood(tmp_path: Path) -> None:
    out = tmp_path / "hostile.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.hostile", "--flood-seconds", "1", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Cost per image" in done.stdout and "## Ordinary uploads" in done.stdout
    figures = json.loads(out.read_text())
    answers = {row["image"]: row["upload"]["answer"] for row in figures["costs"]}
    assert answers["PNG 20000x1 (143 B)"].startswith("400: image dimensions 20000x1")
    assert answers["photo 4032x3024 (phone)"] == "ok"
    assert set(figures["floods"]) >= {"alone", "WebP flood", "TIFF flood answers"}
