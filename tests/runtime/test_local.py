"""``python -m runtime.local`` as users start it: refuses to serve a model it cannot load; logs quiet or JSON."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from runtime.broker import free_port
from runtime.launcher import ROOT, launched
from tests.helpers import photo, wait_all_done


def _start_and_wait_for_exit(workdir: Path, env: dict[str, str]) -> tuple[int, str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "BLOB_URL"):
        full_env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "runtime.local", "--port", str(free_port()), "--workers", "1"],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INFER_MODEL": "resnet19"}, "cannot start: INFER_MODEL='resnet19' is not a model this service knows"),
        ({"INFER_MODEL": "resnet34", "INFER_WEIGHTS": "{tiny}"}, "{tiny} does not fit INFER_MODEL=resnet34"),
        ({"INFER_MODEL": "resnet18", "INFER_WEIGHTS": "{tiny}", "INFER_LABELS": "{labels}"}, "{tiny} does not fit"),
        (
            {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": "{tiny}", "INFER_PRECISION": "fp16"},
            "cannot start: INFER_PRECISION='fp16' is not a precision: one of fp32, bf16, int8",
        ),
    ],
    ids=["unknown-model", "weights-of-another-architecture", "labels-of-the-wrong-length", "unknown-precision"],
)
def test_a_model_that_cannot_load_stops_the_runtime_before_it_serves(
    tmp_path: Path, tiny_weights: Path, env: dict[str, str], message: str
) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["a", "b", "c"]))
    fill = {"tiny": str(tiny_weights), "labels": str(labels)}
    code, output = _start_and_wait_for_exit(tmp_path, {k: v.format(**fill) for k, v in env.items()})
    assert code == 1, output
    assert message.format(**fill) in output
    assert "serving on" not in output
    assert "Traceback" not in output


def test_json_logs_carry_function_request_id_and_counts_and_stay_quiet(tmp_path: Path, tiny_weights: Path) -> None:
    env = {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": str(tiny_weights), "LOG_FORMAT": "json"}
    with launched(tmp_path, ["--workers", "1"], env) as runtime:
        asyncio.run(_one_image(runtime.base_url))
    lines = [line for line in runtime.log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON
    handled = [e for e in entries if e.get("function") == "InferSelfManagedFunction" and "records" in e]
    assert handled, lines
    assert handled[0]["records"] == 1 and handled[0]["done"] == 1 and len(handled[0]["request_id"]) == 36
    assert handled[0]["level"] == "INFO" and handled[0]["process_name"] == "InferSelfManagedFunction#0"
    loggers = {e["logger"] for e in entries}
    assert {"runtime.local", "runtime.kafka_esm", "functions.infer.catalog"} <= loggers
    assert not {name for name in loggers if name.split(".")[0] in ("httpx", "aiokafka", "databases")}


async def _one_image(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        session = (await client.post("/register")).json()["uuid"]
        response = await client.post(
            "/image", data={"uuid": session, "seq": "0", "topk": "2"}, files={"payload": ("c.jpg", photo())}
        )
        assert response.status_code == 202, response.text
        await wait_all_done(client, session, 1, timeout_s=120)


def test_a_corrupt_sqlite_file_stops_the_runtime_with_one_clear_line(tmp_path: Path, tiny_weights: Path) -> None:
    (tmp_path / ".faasinfer").mkdir()
    (tmp_path / ".faasinfer" / "faasinfer.db").write_bytes(b"this is not a database" * 500)
    code, output = _start_and_wait_for_exit(tmp_path, {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": str(tiny_weights)})
    assert code == 1, output
    database = tmp_path / ".faasinfer" / "faasinfer.db"
    assert f"the database file {database} cannot be used (file is not a database): move it away" in output
    assert "Traceback" not in output and "serving on" not in output
