"""Faults on the real local runtime_with_sweeper: nothing accepted is lost, nothing is stored twice. Bounded in time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.template import load_template
from tests.helpers import Launch, child_processes, messages_per_key, upload_with_retry, wait_all_done

ROOT = Path(__file__).resolve().parents[2]


def _runtime_pid(workdir: Path) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cwd").resolve() == workdir.resolve() and b"runtime.local" in (
                    entry / "cmdline"
                ).read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError("runtime process not found")


@pytest.fixture
def runtime_with_sweeper(tmp_path: Path, tiny_weights: Path, local_stack: Launch) -> Iterator[tuple[str, Path]]:
    env = {"INFER_MODEL": "resnet18", "INFER_WEIGHTS": str(tiny_weights), "SWEEP_AFTER_S": "4", "LOG_LEVEL": "INFO"}
    with local_stack(tmp_path, ["--workers", "2", "--schedule-interval", "2"], env) as runtime:
        yield runtime.base_url, tmp_path


INFER_BATCH_SIZE = int(load_template(ROOT / "template.yaml").parameters["InferBatchSize"])


def _rows_are_the_answers(workdir: Path, session: str, items: list[dict[str, Any]]) -> None:
    """The stored rows hold what ``/result`` answered: 3 labels each (topk 3), status done."""
    with sqlite3.connect(workdir / ".faasinfer" / "faasinfer.db") as conn:
        rows = conn.execute(
            "SELECT seq, status, labels FROM requests WHERE uuid = ? ORDER BY seq", (session,)
        ).fetchall()
    assert [(seq, status, json.loads(labels)) for seq, status, labels in rows] == [
        (i["seq"], "done", i["predictions"]) for i in items
    ]
    assert all(len(i["predictions"]) == 3 for i in items)


def _broker_address(workdir: Path) -> str:
    for line in (workdir / "runtime.log").read_text().splitlines():
        if "listening on 127.0.0.1:" in line:
            return line.split("listening on ")[1].split()[0]
    raise AssertionError("embedded broker address not logged")


def test_sigkilled_infer_worker_loses_nothing(runtime_with_sweeper: tuple[str, Path]) -> None:
    base, workdir = runtime_with_sweeper
    runtime = _runtime_pid(workdir)
    workers = [pid for pid, cmd in child_processes(runtime).items() if "spawn_main" in cmd]
    assert len(workers) == 2

    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            session = (await client.post("/register")).json()["uuid"]
            counts: dict[int, int] = {}
            await asyncio.gather(*(upload_with_retry(client, session, seq, counts) for seq in range(30)))
            os.kill(workers[0], signal.SIGKILL)  # mid-stream: its uncommitted batch must go to the survivor
            await asyncio.gather(*(upload_with_retry(client, session, seq, counts) for seq in range(30, 40)))
            return session, await wait_all_done(client, session, 40, timeout_s=120)

    session, items = asyncio.run(scenario())
    _rows_are_the_answers(workdir, session, items)
    # Measured, not assumed. Inferences per image are at most its publishes (the upload's, and the sweeper's for a
    # request queued past SWEEP_AFTER_S while the group rebalanced) plus one: the killed worker's uncommitted
    # batch, redone by the survivor; those extra ones are at most one batch (the mapping's BatchSize).
    bootstrap = _broker_address(workdir)
    published = asyncio.run(messages_per_key(bootstrap, "inference-request", session))
    inferred = asyncio.run(messages_per_key(bootstrap, "inference-result", session))
    assert set(inferred) == {f"{session}:{seq}" for seq in range(40)}
    beyond = {key: n - published[key] for key, n in inferred.items() if n > published[key]}
    assert set(beyond.values()) <= {1} and len(beyond) <= INFER_BATCH_SIZE, (beyond, published, inferred)
    # Which path brought each request back: the sweeper re-published those the dead worker's partitions held until
    # the group noticed it was gone (its session timeout, 10 s, outlasts SWEEP_AFTER_S 4 s + the 2 s schedule).
    swept = sorted(key for key, n in published.items() if n > 1)
    assert swept, f"the sweeper re-published nothing while the killed worker's partitions were unassigned: {published}"
    print(f"repeated inferences: {sum(inferred.values()) - 40}, beyond a publish: {len(beyond)}, swept: {len(swept)}")


def test_broker_crash_and_restart_loses_no_accepted_upload(runtime_with_sweeper: tuple[str, Path]) -> None:
    base, workdir = runtime_with_sweeper
    runtime = _runtime_pid(workdir)
    [broker] = [pid for pid, cmd in child_processes(runtime).items() if "tansu" in cmd]

    async def scenario() -> tuple[str, dict[int, int], list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            session = (await client.post("/register")).json()["uuid"]
            counts: dict[int, int] = {}
            await asyncio.gather(*(upload_with_retry(client, session, seq, counts) for seq in range(20)))
            os.kill(broker, signal.SIGKILL)  # the memory-only broker loses every message and offset
            await asyncio.gather(*(upload_with_retry(client, session, seq, counts) for seq in range(20, 40)))
            return session, counts, await wait_all_done(client, session, 40, timeout_s=150)

    session, counts, items = asyncio.run(scenario())
    assert set(counts) <= {202, 503}  # never a 500, never a lost 202
    _rows_are_the_answers(workdir, session, items)
    log = (workdir / "runtime.log").read_text()
    assert "restarting on" in log


def _workers(runtime: int) -> set[int]:
    return {pid for pid, cmd in child_processes(runtime).items() if "spawn_main" in cmd}


def test_every_killed_worker_is_logged_replaced_and_counted(runtime_with_sweeper: tuple[str, Path]) -> None:
    base, workdir = runtime_with_sweeper
    runtime = _runtime_pid(workdir)
    before = _workers(runtime)
    assert len(before) == 2
    for pid in before:  # all of them: nothing would ever be classified again
        os.kill(pid, signal.SIGKILL)

    deadline = time.monotonic() + 60
    while len(after := _workers(runtime) - before) < 2:
        assert time.monotonic() < deadline, f"workers not replaced: {after}"
        time.sleep(0.5)
    zombies = [pid for pid in before if Path(f"/proc/{pid}").exists()]
    assert zombies == []  # reaped, not <defunct>

    async def scenario() -> tuple[list[dict[str, Any]], str]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            session = (await client.post("/register")).json()["uuid"]
            counts: dict[int, int] = {}
            await asyncio.gather(*(upload_with_retry(client, session, seq, counts) for seq in range(6)))
            items = await wait_all_done(client, session, 6, timeout_s=120)
            return items, (await client.get("/metrics")).text

    items, metrics = asyncio.run(scenario())
    assert all(len(i["predictions"]) == 3 for i in items)
    for name in ("InferSelfManagedFunction#0", "InferSelfManagedFunction#1"):
        assert f'faasinfer_runtime_restarts_total{{child="{name}"}} 1.0' in metrics
    log = (workdir / "runtime.log").read_text()
    assert log.count("exited: signal SIGKILL; restarting in 1 s") == 2 and log.count("restarted (pid") == 2
