"""Each handler imports only what it uses, checked in a fresh interpreter (what a cold start loads): query never
loads the Kafka client, infer never the store or torch, the sweeper and collect never Pillow. And infer classifies
from its engine file in an interpreter where torch cannot be imported at all, as in its zip artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.infer.config import EngineSpec, ModelSpec
from functions.infer.loading import load_classifier

ROOT = Path(__file__).resolve().parents[2]
TORCH = ("torch", "torchvision", "onnx", "onnxscript")
STORE = ("functions.common.store", "sqlalchemy", "databases", "asyncmy", "aiosqlite")
NEVER = {
    "upload": (*TORCH, "onnxruntime"),
    "query": (*TORCH, "onnxruntime", "aiokafka", "functions.common.kafka_edge"),
    "infer": TORCH + STORE + ("starlette", "functions.common.http_edge"),
    "collect": (*TORCH, "onnxruntime", "PIL", "starlette", "functions.common.http_edge"),
    "sweeper": (*TORCH, "onnxruntime", "PIL", "starlette", "functions.common.http_edge"),
}


def _loaded(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, **(env or {})}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("function", sorted(NEVER))
def test_a_handler_loads_only_what_it_uses(function: str) -> None:
    code = (
        f"import json, sys, functions.{function}.app as app; assert callable(app.handler); "
        "print(json.dumps({'modules': sorted(sys.modules)}))"
    )
    modules = set(_loaded(code)["modules"])  # type: ignore[arg-type]
    loaded = sorted(m for m in modules for name in NEVER[function] if m == name or m.startswith(name + "."))
    assert loaded == [], f"{function} loads {loaded}"


CLASSIFY_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None  # `import torch` fails, as where it is not installed
from functions.common.image_limits import ImageLimits
from functions.common.settings import get_settings
from functions.infer.config import model_spec
from functions.infer.loading import load_classifier
from functions.infer.model import ModelUnavailable
try:
    classifier = load_classifier(model_spec(get_settings()))
except ModelUnavailable as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit(0)
data = open("demo/photos/chelsea.jpg", "rb").read()
[(labels, scores)] = classifier.predict(classifier.preprocess(data, ImageLimits())[None], [3])
print(json.dumps({"labels": labels, "engine": classifier.engine, "torch": "torch.nn" in sys.modules}))
"""


@pytest.mark.usefixtures("engine_build")
def test_infer_classifies_from_its_engine_file_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    load_classifier(ModelSpec("efficientnet_lite0", engine=EngineSpec(cache_dir=tmp_path)))  # the build step
    env = {"INFER_MODEL": "efficientnet_lite0", "INFER_ENGINE_CACHE": str(tmp_path), "TMPDIR": str(tmp_path)}
    out = _loaded(CLASSIFY_WITHOUT_TORCH, env)
    assert out["engine"] == "onnxruntime/fp32" and out["torch"] is False
    assert out["labels"][0] in {"tabby", "tiger cat", "Egyptian cat"}  # type: ignore[index]


def test_without_an_engine_or_torch_the_start_fails_naming_the_folder_and_the_command(tmp_path: Path) -> None:
    env = {"INFER_MODEL": "efficientnet_lite0", "INFER_ENGINE_CACHE": str(tmp_path / "none"), "TMPDIR": str(tmp_path)}
    error = str(_loaded(CLASSIFY_WITHOUT_TORCH, env)["error"])
    assert (
        f"no engine for INFER_MODEL=efficientnet_lite0 INFER_WEIGHTS=DEFAULT INFER_PRECISION=fp32 in {tmp_path}"
        in error
    )
    assert "this install has no torch" in error and "python -m functions.infer.prepare --out" in error


def test_on_lambda_a_missing_engine_fails_the_init_naming_its_folder(tmp_path: Path) -> None:
    """With Lambda's Runtime API in the environment the handler module loads its engine at import (the init phase)."""
    code = "import sys; sys.modules['torch'] = None\nimport functions.infer.app"
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9", "INFER_ENGINE_CACHE": str(tmp_path / "engines"),
           "INFER_MODEL": "efficientnet_lite0", "TMPDIR": str(tmp_path)}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "ModelUnavailable: no engine for INFER_MODEL=efficientnet_lite0" in done.stderr
    assert str(tmp_path / "engines") in done.stderr
