"""Deployed = tested: every zip function built by stock ``sam build`` works alone from its artifact.

Each artifact is built from a clean copy of the repository, measured against Lambda's 250 MB (unzipped) limit,
then its handler runs in an interpreter that sees nothing but the standard library and the build folder
(``python -I -S``), with that folder read-only as Lambda's ``/var/task`` is, only a temp dir writable, Lambda's
environment variables and no others, fed real AWS events (API Gateway HTTP API v2, Kafka, EventBridge).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest

from functions.common.store import RequestRow, Store, open_store
from tests.conftest import ZIP_FUNCTIONS as FUNCTIONS
from tests.helpers import consume_all, load_event, unique

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_ZIP_LIMIT = 250 * 1024 * 1024
SESSION = "3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47"
HANDLERS = {
    "UploadFunction": "functions.upload.app.handler",
    "QueryFunction": "functions.query.app.handler",
    "CollectSelfManagedFunction": "functions.collect.app.handler",
    "SweeperFunction": "functions.sweeper.app.handler",
}

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


def _tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _artifact(sam_build: Path, function: str) -> Path:
    return sam_build / function


def test_each_artifact_holds_its_own_code_and_fits_lambda(sam_build: Path) -> None:
    sizes = {}
    for function in FUNCTIONS:
        artifact = _artifact(sam_build, function)
        sizes[function] = _tree_size(artifact)
        assert sizes[function] <= LAMBDA_ZIP_LIMIT, (function, sizes[function])
        packages = {p.name for p in (artifact / "functions").iterdir() if p.is_dir()}
        own = HANDLERS[function].split(".")[1]
        assert packages == {"common", own}, (function, packages)
        assert (
            not (artifact / "torch").exists()
            and not (artifact / "tests").exists()
            and not (artifact / "runtime").exists()
        )
    report = ROOT / "artifacts" / "artifact-sizes.json"  # reported (README "Deploying"), not asserted beyond the limit
    report.parent.mkdir(exist_ok=True)
    report.write_text(json.dumps({k: round(v / 2**20, 1) for k, v in sizes.items()}, indent=1) + "\n")


def _invoke(sam_build: Path, function: str, event: dict[str, Any], tmp: Path, env: dict[str, str]) -> Any:
    """Run the handler alone: stdlib + the build folder, read-only task root, a writable temp dir only."""
    artifact = _artifact(sam_build, function)
    lambda_env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp),
        "HOME": str(tmp),
        "LAMBDA_TASK_ROOT": str(artifact),
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        **env,
    }
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && cd "$1" && shift && exec "$@"'
    command = ["unshare", "--mount", "sh", "-c", script, "sh", str(artifact),
               sys.executable, "-I", "-S", "-c", RUNNER, HANDLERS[function]]  # fmt: skip
    done = subprocess.run(command, input=json.dumps(event), capture_output=True, text=True, env=lambda_env, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    output = json.loads(done.stdout)
    stdlib = sysconfig.get_paths()["stdlib"]
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
    sam_build: Path, tmp_path: Path, lambda_env: dict[str, str]
) -> None:
    response = _invoke(sam_build, "UploadFunction", load_event("apigw_v2_upload_register"), tmp_path, lambda_env)
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
    sam_build: Path, tmp_path: Path, lambda_env: dict[str, str]
) -> None:
    asyncio.run(_seed(lambda_env["DATABASE_URL"], range(3)))
    summary = _invoke(sam_build, "CollectSelfManagedFunction", load_event("selfmanaged_collect"), tmp_path, lambda_env)
    assert summary == {
        "applied": 2, "duplicate": 0, "unknown": 0, "classified": 1, "failed": 1, "dead_lettered": 0
    }  # fmt: skip
    response = _invoke(sam_build, "QueryFunction", load_event("apigw_v2_query_result"), tmp_path, lambda_env)
    assert response["statusCode"] == 200, response
    items = {item["seq"]: item for item in json.loads(response["body"])["items"]}
    assert items[0]["status"] == "failed" and items[0]["error"] == "late failure"
    assert items[2]["status"] == "done" and items[2]["predictions"] == ["espresso"]


def test_sweeper_artifact_republishes_stale_requests_to_kafka(
    sam_build: Path, tmp_path: Path, lambda_env: dict[str, str]
) -> None:
    asyncio.run(_seed(lambda_env["DATABASE_URL"], range(2), submitted_at=time.time() - 600))
    summary = _invoke(sam_build, "SweeperFunction", load_event("eventbridge_sweeper"), tmp_path, lambda_env)
    assert summary == {"republished": 2, "failed": 0}
    records = asyncio.run(consume_all(lambda_env["KAFKA_BOOTSTRAP_SERVERS"], lambda_env["REQUEST_TOPIC"], 2))
    assert sorted(json.loads(r.value)["seq"] for r in records) == [0, 1]


def test_an_unset_database_parameter_is_a_clear_error_not_a_crash(
    sam_build: Path, tmp_path: Path, lambda_env: dict[str, str]
) -> None:
    env = {**lambda_env, "DATABASE_URL": "", "DATABASE_SECRET_ARN": ""}  # what AWS passes for unset parameters
    response = _invoke(sam_build, "UploadFunction", load_event("apigw_v2_upload_register"), tmp_path, env)
    assert response["statusCode"] == 503, response
    assert "DatabaseUrl or DatabaseSecretArn" in json.loads(response["body"])["error"]
