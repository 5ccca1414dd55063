"""Deployed = tested: the README's one `sam build` builds every zip function without Docker, and each works alone
from its artifact.

The build runs from a clean copy of the repository with stock `sam build` (no function named: building one into the
build folder empties it first, samcli/commands/build/build_context.py). Each artifact is measured against Lambda's
250 MB (unzipped) limit, holds exactly the versions its lock pins, then its handler runs under CPython 3.12 (the
artifacts hold cp312 wheels for Lambda's python3.12) seeing nothing but the standard library and the build folder
(``python -I -S``), with that folder read-only as Lambda's ``/var/task`` is, only a temp dir writable, Lambda's
environment variables and no others, fed real AWS events (API Gateway HTTP API v2, Kafka, EventBridge).
"""

from __future__ import annotations

import asyncio
import glob
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from functions.common.store import RequestRow, Store, open_store
from runtime.lambdafn.task_root import read_only
from runtime.template import load_template
from tests.deploy.build import checkout
from tests.deploy.build import sam_build as run_sam_build
from tests.deploy.stack import raw_template
from tests.helpers import consume_all, load_event, photo, unique

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_ZIP_LIMIT = 250 * 1024 * 1024
SESSION = "3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47"
TEMPLATE = load_template(ROOT / "template.yaml")  # the default stack: self-managed Kafka, no VPC
# The template's functions as written (conditions aside: `sam build` evaluates none of them).
RAW = {n: r for n, r in raw_template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
ZIP_FUNCTIONS = sorted(name for name, r in RAW.items() if r["Properties"].get("PackageType") != "Image")
IMAGE_FUNCTIONS = sorted(name for name, r in RAW.items() if r["Properties"].get("PackageType") == "Image")
# Which lock each function's artifact installs (functions/Makefile).
LOCKS = {"upload": "http", "query": "http", "collect": "base", "sweeper": "base", "infer": "infer"}
REPORT = ROOT / "artifacts" / "artifact-sizes.json"  # reported (README "Deploying"), not asserted beyond the limit

# What Lambda's bootstrap does for a Python handler, and nothing more: import by name from the task root, call it
# with the event and a context, print the result (and which files were imported, to prove where they came from).
RUNNER = """
import importlib, json, os, sys
task_root = os.environ["LAMBDA_TASK_ROOT"]
sys.path.insert(0, task_root)
module, attribute = sys.argv[1].rsplit(".", 1)
handler = getattr(importlib.import_module(module), attribute)
class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    def get_remaining_time_in_millis(self): return 30000
result = handler(json.load(sys.stdin), Context())
files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
json.dump({"result": result, "files": files}, sys.stdout)
"""


@pytest.fixture(scope="module")
def sam_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's build: one stock `sam build` of the template as it is, from a clean copy, without Docker."""
    source = checkout(tmp_path_factory.mktemp("checkout"))
    build = tmp_path_factory.mktemp("sam") / "build"
    started = time.monotonic()
    done = run_sam_build(source, build)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({"sam_build_seconds": round(seconds, 1)}, indent=1) + "\n")
    return build


@pytest.fixture(scope="session")
def lambda_python() -> tuple[str, str]:
    """A CPython 3.12, as Lambda's python3.12 runs the artifacts (their wheels are cp312): its executable and its
    standard library."""
    candidates = [
        shutil.which("python3.12"),
        *sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.12*/bin/python3.12"))),
    ]
    for candidate in filter(None, candidates):
        probe = "import sys, sysconfig; print(sys.executable); print(sysconfig.get_paths()['stdlib'])"
        done = subprocess.run([candidate, "-I", "-c", probe], capture_output=True, text=True)
        if done.returncode == 0:
            executable, stdlib = done.stdout.split()
            return executable, stdlib
    pytest.fail("the artifacts are built for Lambda's python3.12 and need a CPython 3.12 to run (pyenv install 3.12)")


def _function(name: str) -> str:
    """The function folder a template function's handler lives in (upload, infer, ...)."""
    return str(RAW[name]["Properties"]["Handler"]).split(".")[1]


def _tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _artifact(sam_build: Path, function: str) -> Path:
    return sam_build / function


def test_one_sam_build_builds_every_zip_function_without_docker(sam_build: Path) -> None:
    """Item 8 of issue 31: the torch image is built only for InferBackend torch, so `sam build` needs no Docker."""
    built = sorted(p.name for p in sam_build.iterdir() if p.is_dir())
    assert built == ZIP_FUNCTIONS
    assert not set(IMAGE_FUNCTIONS) & set(built)


def test_each_artifact_holds_its_own_code_and_fits_lambda(sam_build: Path) -> None:
    sizes = {}
    for function in ZIP_FUNCTIONS:
        artifact = _artifact(sam_build, function)
        sizes[function] = _tree_size(artifact)
        assert sizes[function] <= LAMBDA_ZIP_LIMIT, (function, sizes[function])
        packages = {p.name for p in (artifact / "functions").iterdir() if p.is_dir() and p.name != "__pycache__"}
        assert packages == {"common", _function(function)}, (function, packages)
        assert not {"torch", "torchvision", "tests", "runtime"} & {p.name for p in artifact.iterdir()}, function
    report = json.loads(REPORT.read_text())
    REPORT.write_text(json.dumps({**report, **{k: round(v / 2**20, 1) for k, v in sizes.items()}}, indent=1) + "\n")


def test_infer_artifact_holds_the_engine_of_its_model(sam_build: Path) -> None:
    """The engine is made at build time for the template's model parameters and read from /var/task/engines; the
    artifact's modules come compiled by CPython 3.12 (a read-only /var/task would compile them at every start)."""
    for function in (name for name in ZIP_FUNCTIONS if _function(name) == "infer"):
        artifact = _artifact(sam_build, function)
        [engine] = (artifact / "engines").iterdir()
        assert sorted(p.name for p in engine.iterdir()) == ["engine.onnx", "manifest.json"]
        manifest = json.loads((engine / "manifest.json").read_text())
        assert (manifest["name"], manifest["engine"]) == ("efficientnet_lite0:packaged", "onnxruntime/fp32")
        assert manifest["bytes"] == (engine / "engine.onnx").stat().st_size and len(manifest["labels"]) == 1000
        assert RAW[function]["Properties"]["Environment"]["Variables"]["INFER_ENGINE_CACHE"] == "/var/task/engines"
        assert (artifact / "functions" / "infer" / "__pycache__" / "app.cpython-312.pyc").is_file()
        assert not (artifact / "onnxruntime" / "transformers").exists() and not (artifact / "torch").exists()


def _installed(artifact: Path) -> dict[str, str]:
    found = {}
    for info in artifact.glob("*.dist-info"):
        fields = dict(re.findall(r"^(Name|Version): (.+)$", (info / "METADATA").read_text(), re.MULTILINE))
        found[fields["Name"].lower().replace("_", "-").replace(".", "-")] = fields["Version"]
    return found


def _locked(lock: str) -> dict[str, str]:
    text = (ROOT / "functions" / "requirements" / f"{lock}.lock").read_text()
    return {
        name.lower().replace("_", "-").replace(".", "-"): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.MULTILINE)
    }


def test_each_artifact_installs_exactly_what_its_lock_pins(sam_build: Path) -> None:
    """What ships is what the lock says (and what these tests ran), not whatever was newest at build time."""
    for function in ZIP_FUNCTIONS:
        assert _installed(_artifact(sam_build, function)) == _locked(LOCKS[_function(function)]), function


def _invoke(
    sam_build: Path, python: tuple[str, str], function: str, event: dict[str, Any], tmp: Path, env: dict[str, str]
) -> Any:
    """Run the handler alone: stdlib + the build folder, read-only task root, a writable temp dir only."""
    artifact = _artifact(sam_build, function)
    executable, stdlib = python
    lambda_env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp),
        "HOME": str(tmp),
        "LAMBDA_TASK_ROOT": str(artifact),
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(RAW[function]["Properties"].get("MemorySize", 512)),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        **env,
    }
    handler = str(RAW[function]["Properties"]["Handler"])
    command = read_only(artifact, [executable, "-I", "-S", "-c", RUNNER, handler])  # as runtime.local runs it
    done = subprocess.run(command, input=json.dumps(event), capture_output=True, text=True, env=lambda_env, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    output = json.loads(done.stdout)
    foreign = [f for f in output["files"] if not f.startswith((str(artifact), stdlib))]
    assert not foreign, f"{function} imported files from outside its artifact: {foreign[:5]}"
    return output["result"]


@pytest.fixture
def lambda_env(tmp_path: Path, broker: str) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'results.db'}"
    return {
        "DATABASE_URL": url,
        "BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "KAFKA_BOOTSTRAP_SERVERS": broker,
        "REQUEST_TOPIC": unique("req"),
        "RESULT_TOPIC": unique("res"),
        "DLQ_TOPIC": unique("dlq"),
        "DATABASE_SECRET_ARN": "",  # as the template passes an unset parameter: an empty string
        "SWEEP_AFTER_S": "0",
    }


async def _seed(url: str, seqs: range, submitted_at: float = 0.0) -> None:
    store = open_store(url)
    await store.create_session(SESSION)
    for seq in seqs:
        row = RequestRow(
            SESSION, seq, 5, f"{SESSION}/{seq}.jpg", f"{seq:064d}", "image/jpeg", submitted_at=submitted_at
        )
        await store.add_request(row)
    await store.close()


async def _rows(url: str) -> dict[int, RequestRow]:
    store = open_store(url)
    try:
        return {r.seq: r for r in await store.get_range(SESSION, 0, 100)}
    finally:
        await store.close()


def test_upload_artifact_registers_a_session_through_api_gateway(
    sam_build: Path, lambda_python: tuple[str, str], tmp_path: Path, lambda_env: dict[str, str]
) -> None:
    response = _invoke(
        sam_build, lambda_python, "UploadFunction", load_event("apigw_v2_upload_register"), tmp_path, lambda_env
    )
    assert response["statusCode"] == 200, response
    uuid = json.loads(response["body"])["uuid"]
    store = open_store(lambda_env["DATABASE_URL"])
    assert asyncio.run(_exists(store, uuid))


async def _exists(store: Store, uuid: str) -> bool:
    try:
        return await store.session_exists(uuid)
    finally:
        await store.close()


def test_collect_then_query_artifacts_store_and_answer_results(
    sam_build: Path, lambda_python: tuple[str, str], tmp_path: Path, lambda_env: dict[str, str]
) -> None:
    asyncio.run(_seed(lambda_env["DATABASE_URL"], range(3)))
    summary = _invoke(
        sam_build, lambda_python, "CollectSelfManagedFunction", load_event("selfmanaged_collect"), tmp_path, lambda_env
    )
    assert summary == {
        "applied": 2, "duplicate": 0, "unknown": 0, "classified": 1, "failed": 1, "dead_lettered": 0
    }  # fmt: skip
    response = _invoke(
        sam_build, lambda_python, "QueryFunction", load_event("apigw_v2_query_result"), tmp_path, lambda_env
    )
    assert response["statusCode"] == 200, response
    items = {item["seq"]: item for item in json.loads(response["body"])["items"]}
    assert items[0]["status"] == "failed" and items[0]["error"] == "late failure"
    assert items[2]["status"] == "done" and items[2]["predictions"] == ["espresso"]


def test_sweeper_artifact_republishes_stale_requests_to_kafka(
    sam_build: Path, lambda_python: tuple[str, str], tmp_path: Path, lambda_env: dict[str, str]
) -> None:
    asyncio.run(_seed(lambda_env["DATABASE_URL"], range(2), submitted_at=time.time() - 600))
    summary = _invoke(
        sam_build, lambda_python, "SweeperFunction", load_event("eventbridge_sweeper"), tmp_path, lambda_env
    )
    assert summary == {"republished": 2, "failed": 0}
    records = asyncio.run(consume_all(lambda_env["KAFKA_BOOTSTRAP_SERVERS"], lambda_env["REQUEST_TOPIC"], 2))
    assert sorted(json.loads(r.value)["seq"] for r in records) == [0, 1]


def test_an_unset_database_parameter_is_a_clear_error_not_a_crash(
    sam_build: Path, lambda_python: tuple[str, str], tmp_path: Path, lambda_env: dict[str, str]
) -> None:
    env = {**lambda_env, "DATABASE_URL": "", "DATABASE_SECRET_ARN": ""}  # what AWS passes for unset parameters
    response = _invoke(
        sam_build, lambda_python, "UploadFunction", load_event("apigw_v2_upload_register"), tmp_path, env
    )
    assert response["statusCode"] == 503, response
    assert "DatabaseUrl or DatabaseSecretArn" in json.loads(response["body"])["error"]


def test_infer_artifact_classifies_photos_without_torch(
    sam_build: Path, lambda_python: tuple[str, str], tmp_path: Path, lambda_env: dict[str, str]
) -> None:
    """The zip runs ONNX Runtime on its baked engine: no torch in the artifact or the process, real labels."""
    blobs = tmp_path / "blobs" / SESSION
    blobs.mkdir(parents=True)
    (blobs / "0.jpg").write_bytes(photo("chelsea.jpg"))
    (blobs / "1.png").write_bytes(photo("camera.png"))
    spec = TEMPLATE.function("InferSelfManagedFunction")  # its environment as the template declares it
    declared = {key: value for key, value in spec.env.items() if key.startswith(("INFER_", "MALLOC_"))}
    artifact = _artifact(sam_build, "InferSelfManagedFunction")
    declared["INFER_ENGINE_CACHE"] = declared["INFER_ENGINE_CACHE"].replace("/var/task", str(artifact), 1)
    summary = _invoke(
        sam_build, lambda_python, "InferSelfManagedFunction", load_event("selfmanaged_infer"), tmp_path,
        {**lambda_env, **declared},
    )  # fmt: skip
    assert summary["done"] == 2, summary
    records = asyncio.run(consume_all(lambda_env["KAFKA_BOOTSTRAP_SERVERS"], lambda_env["RESULT_TOPIC"], 2))
    results = {json.loads(r.value)["seq"]: json.loads(r.value) for r in records}
    assert results[10]["status"] == "done" and results[10]["labels"][0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert results[11]["status"] == "done" and len(results[11]["labels"]) == 1000
