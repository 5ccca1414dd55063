"""The infer model parameters reach the build: `sam build --parameter-overrides InferModel=...` makes the engine of
that model, not of the defaults, and without Docker.

How they get there: SAM CLI resolves ``!Ref`` in a function's Metadata with the parameter overrides and, on a full
build, writes the result (``BuildProperties``) to ``build.toml`` beside the build folder before it runs make
(samcli/lib/build/build_graph.py); functions/Makefile reads it there. The engine export itself needs torch and runs
on the build machine's python: here a stand-in records what it is given, so the plumbing is tested apart from the
export (tests/functions/test_artifacts.py builds the real engine).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.build import checkout, sam_build
from tests.deploy.stack import raw_template

pytestmark = pytest.mark.usefixtures("build_tools")  # runs stock `sam build`

INFER = ("InferMskFunction", "InferSelfManagedFunction", "InferSelfManagedVpcFunction")
NON_DEFAULT = {
    "InferModel": "mobilenet_v3_small",
    "InferWeights": "IMAGENET1K_V1",
    "InferBackend": "onnxruntime",
    "InferPrecision": "int8",
}
# The stand-in for the project's python: `-m functions.infer.prepare --out DIR` writes what it was given into DIR;
# anything else (the Makefile's own steps) runs on the real interpreter.
RECORDER = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "functions.infer.prepare" ] && [ "$3" = "--out" ]; then
  exec "{python}" -c '
import json, os, sys
os.makedirs(sys.argv[1], exist_ok=True)
given = {{k: os.environ.get(k) for k in ("INFER_MODEL", "INFER_WEIGHTS", "INFER_BACKEND", "INFER_PRECISION")}}
json.dump({{"given": given, "fallback": os.environ.get("INFER_FALLBACK")}}, open(sys.argv[1] + "/given.json", "w"))
' "$4"
fi
exec "{python}" "$@"
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture
def recorder(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "python"
    path.write_text(RECORDER.format(python=sys.executable))
    path.chmod(0o755)
    return {"PROJECT_PYTHON": str(path)}


def _given(build: Path, function: str) -> dict[str, object]:
    recorded: dict[str, object] = json.loads((build / function / "engines" / "given.json").read_text())
    return recorded


def test_a_full_build_bakes_the_engine_of_the_parameters_it_is_given(
    source: Path, recorder: dict[str, str], tmp_path: Path
) -> None:
    others = [name for name, r in raw_template()["Resources"].items() if name.endswith("Function")]
    excluded = [arg for name in others if name not in INFER for arg in ("--exclude", name)]
    overrides = [f"{key}={value}" for key, value in NON_DEFAULT.items()]
    build = tmp_path / "build"
    done = sam_build(source, build, "--parameter-overrides", *overrides, *excluded, env=recorder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected = {f"INFER_{key[5:].upper()}": value for key, value in NON_DEFAULT.items()}
    for function in INFER:
        assert _given(build, function) == {"given": expected, "fallback": ""}, function  # no fallback model either
        assert f"engine for INFER_MODEL={NON_DEFAULT['InferModel']}" in done.stdout + done.stderr
    assert sorted(p.name for p in build.iterdir() if p.is_dir()) == sorted(INFER)  # no image, no Docker


def test_an_engine_kept_in_s3_is_not_baked_into_the_artifact(
    source: Path, recorder: dict[str, str], tmp_path: Path
) -> None:
    """``InferEngineLocation=s3://…``: the function reads its engine there at init (functions/infer/engine_remote.py),
    so the build makes none and says where it will come from."""
    build = tmp_path / "build"
    location = "s3://model-store/faasinfer/engines"
    done = sam_build(
        source, build, "InferSelfManagedFunction", env={**recorder, **NON_DEFAULT_ENV, "INFER_ENGINE_URL": location}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (build / "InferSelfManagedFunction" / "engines").exists()
    said = f"the engine is read from {location} at init, not baked in"
    assert said in done.stdout + done.stderr
    assert (build / "InferSelfManagedFunction" / "functions" / "infer" / "engine_remote.py").is_file()


NON_DEFAULT_ENV = {f"INFER_{key[5:].upper()}": value for key, value in NON_DEFAULT.items()}


def test_one_named_function_takes_the_model_from_the_environment(
    source: Path, recorder: dict[str, str], tmp_path: Path
) -> None:
    """`sam build <Function>` does not write build.toml, so --parameter-overrides cannot reach make: the INFER_*
    variables of the environment can, and the template's defaults stand in for them otherwise."""
    build = tmp_path / "build"
    environment = {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": "DEFAULT", "INFER_BACKEND": "onnxruntime",
                   "INFER_PRECISION": "fp32"}  # fmt: skip
    done = sam_build(source, build, "InferSelfManagedFunction", env={**recorder, **environment})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _given(build, "InferSelfManagedFunction")["given"] == environment
    defaults = {key: str(p["Default"]) for key, p in raw_template()["Parameters"].items() if key in NON_DEFAULT}
    other = tmp_path / "defaults" / "build"
    done = sam_build(source, other, "InferSelfManagedFunction", env=recorder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    given = _given(other, "InferSelfManagedFunction")["given"]
    assert given == {f"INFER_{key[5:].upper()}": value for key, value in defaults.items()}


def _docker_runs() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(_docker_runs(), reason="with a Docker engine this would build the whole torch image")
def test_only_the_torch_backend_asks_for_docker(source: Path, tmp_path: Path) -> None:
    done = sam_build(source, tmp_path / "build", "InferTorchSelfManagedFunction", "--parameter-overrides",
                     "InferBackend=torch")  # fmt: skip
    assert done.returncode != 0 and "container runtime" in done.stdout + done.stderr
