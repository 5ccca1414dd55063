"""``python -m runtime.local`` as users start it: refuses to serve a model it cannot load; logs quiet or JSON; stops
cleanly on a terminal's Ctrl-C; says how to pick another port; the demo ends with what to do next."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from runtime.kafka.broker import free_port
from runtime.local import CannotStart, prepare_database
from tests.helpers import Launch, photo, wait_all_done
from tools.launcher import EXTERNAL, ROOT, wait_until_ok

pytestmark = pytest.mark.usefixtures("local_stack")  # every test starts runtime.local


def _environment(env: dict[str, str]) -> dict[str, str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env}  # lines in a terminal's order
    for name in EXTERNAL:
        full_env.pop(name, None)
    return full_env


def _start_and_wait_for_exit(workdir: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    args = args or ("--port", str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "runtime.local", "--workers", "1", *args],
        cwd=workdir,
        env=_environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout


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


def test_json_logs_carry_function_request_id_and_counts_and_stay_quiet(
    tmp_path: Path, tiny_weights: Path, local_stack: Launch
) -> None:
    env = {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": str(tiny_weights), "LOG_FORMAT": "json"}
    with local_stack(tmp_path, ["--workers", "1"], env) as runtime:
        asyncio.run(_one_image(runtime.base_url))
    lines = [line for line in runtime.log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON
    handled = [e for e in entries if e.get("function") == "InferSelfManagedFunction" and "records" in e]
    assert handled, lines
    assert handled[0]["records"] == 1 and handled[0]["done"] == 1 and len(handled[0]["request_id"]) == 36
    assert handled[0]["level"] == "INFO" and handled[0]["process_name"] == "InferSelfManagedFunction#0"
    loggers = {e["logger"] for e in entries}
    assert {"runtime.local", "runtime.esm.kafka", "functions.infer.loading"} <= loggers
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


@contextmanager
def _taken_port() -> Iterator[int]:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_a_taken_port_stops_the_runtime_with_how_to_pick_another(tmp_path: Path, tiny_weights: Path) -> None:
    with _taken_port() as port:
        env = {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": str(tiny_weights)}
        code, output = _start_and_wait_for_exit(tmp_path, env, "--port", str(port))
    assert code == 1, output
    assert (
        f"cannot listen on 127.0.0.1:{port}: another program is using that port; pick another one: make run PORT="
        in output
    )
    assert "(or python -m runtime.local --port " in output
    assert "Traceback" not in output and "serving on" not in output


def test_the_demo_takes_a_free_port_when_its_own_is_taken_and_ends_with_what_to_do_next(
    tmp_path: Path, tiny_weights: Path
) -> None:
    with _taken_port() as port:
        env = {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": str(tiny_weights)}
        code, output = _start_and_wait_for_exit(tmp_path, env, "--demo", "--port", str(port))
    assert code == 0, output
    lines = output.splitlines()
    assert "faasinfer demo: top-k per photo" in output and "chelsea.jpg" in output
    assert lines[-3].startswith("next: `make run PORT=") and "serves the same stack until Ctrl-C" in lines[-3]
    assert lines[-2].strip().startswith("open http://127.0.0.1:") and "/ in a browser" in lines[-2]
    assert "(Ctrl-C to stop)" not in output and "route " not in output
    assert "ERROR" not in output and "Traceback" not in output
    assert len(lines) <= 60, output


@contextmanager
def _serving_in_own_session(workdir: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The runtime in a process group of its own, as a terminal runs a foreground command; serving when yielded.
    Its output goes to ``workdir / "runtime.log"``."""
    port = free_port()
    with open(workdir / "runtime.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime.local", "--workers", "1", "--port", str(port)],
            cwd=workdir,
            env=_environment(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/health", 180, alive=lambda: process.poll() is None)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _session_processes(session: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # after the command: state, ppid, pgrp, session
            found.append(int(stat.parent.name))
    return found


def test_ctrl_c_to_the_process_group_stops_everything_without_an_error(tmp_path: Path, tiny_weights: Path) -> None:
    """A terminal sends SIGINT to every process of the foreground group: the runtime, its workers, ``make``."""
    env = {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": str(tiny_weights), "LOG_LEVEL": "INFO"}
    with _serving_in_own_session(tmp_path, env) as runtime:
        os.killpg(runtime.pid, signal.SIGINT)
        runtime.wait(60)
    output = (tmp_path / "runtime.log").read_text()
    assert runtime.returncode == 0, output
    lines = output.splitlines()
    stopping = [i for i, line in enumerate(lines) if line.endswith("runtime.local: shutting down")]
    assert stopping and lines[-1].endswith("runtime.local: stopped"), output
    assert not [line for line in lines if " ERROR " in line or "Traceback" in line], output
    assert not [line for line in lines[stopping[0] :] if "restart" in line], output
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker leaves once it reads the runtime's end
    while (left := _session_processes(runtime.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]


def test_no_process_of_a_serving_runtime_loads_torch(tmp_path: Path, tiny_weights: Path) -> None:
    """Torch is how models come in: the engine is exported by a build step, the serving processes run ONNX Runtime."""
    env = {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": str(tiny_weights)}
    with _serving_in_own_session(tmp_path, env) as runtime:
        processes = _session_processes(runtime.pid)
        assert len(processes) >= 3  # the runtime, its worker, the broker
        with_torch = [pid for pid in processes if "libtorch" in Path(f"/proc/{pid}/maps").read_text()]
        assert not with_torch, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in with_torch]


async def test_a_database_that_refuses_the_credentials_stops_the_start_with_one_line_without_the_password(
    mariadb_url: str,
) -> None:
    url = mariadb_url.replace("root@", "nobody:s3cret@")
    placement = SimpleNamespace(settings=SimpleNamespace(database_url=url))
    with pytest.raises(CannotStart) as raised:
        await prepare_database([placement])  # type: ignore[list-item]
    message = str(raised.value)
    database = url.split("@")[-1]
    assert message.startswith(f"the database {database} cannot be used: (") and "Access denied" in message
    assert message.endswith("; check DATABASE_URL") and "s3cret" not in message and "\n" not in message
