"""The whole system as users run it: ``python -m runtime.local`` against a real broker and real databases."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from torchvision.models import ResNet18_Weights

from functions.common.store import open_store
from tests.helpers import Launch, child_processes, messages_per_key, photo, unique, wait_all_done

ROOT = Path(__file__).resolve().parent.parent
IMAGENET = set(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
UPLOADS = [("chelsea.jpg", 1), ("coffee.jpg", 3), ("camera.png", 5), ("rocket.jpg", 10)]


class Stack:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, env: dict[str, str], log: Path) -> None:
        self.process, self.base_url, self.env, self.log = process, base_url, env, log


@pytest.fixture(params=["embedded-sqlite", "external-mariadb"])
def runtime_in_each_mode(
    request: pytest.FixtureRequest, tmp_path: Path, tiny_weights: Path, local_stack: Launch
) -> Iterator[Stack]:
    env = {
        "INFER_MODEL": "resnet18",
        "INFER_WEIGHTS": str(tiny_weights),
        "INFER_MAX_BATCH": "4",
        "BLOB_URL": f"file://{tmp_path / 'blobs'}",
    }
    if request.param == "external-mariadb":
        env["DATABASE_URL"] = request.getfixturevalue("mariadb_url").replace("mysql+asyncmy", "mysql")
        env["KAFKA_BOOTSTRAP_SERVERS"] = request.getfixturevalue("broker")
        env.update({"REQUEST_TOPIC": unique("req"), "RESULT_TOPIC": unique("res"), "DLQ_TOPIC": unique("dlq")})
    with local_stack(tmp_path, ["--workers", "2"], env) as runtime:
        env.setdefault("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / '.faasinfer' / 'faasinfer.db'}")
        yield Stack(runtime.process, runtime.base_url, env, runtime.log_path)


async def _bootstrap(stack: Stack) -> str:
    if "KAFKA_BOOTSTRAP_SERVERS" in stack.env:
        return stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    for line in stack.log.read_text().splitlines():
        if "listening on 127.0.0.1:" in line:
            return line.split("listening on ")[1].split()[0]
    raise AssertionError("embedded broker address not logged")


async def _wait_for_results(client: httpx.AsyncClient, session: str, n: int) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + 180
    while True:
        items: list[dict[str, Any]] = (
            await client.get("/result", params={"uuid": session, "seqStart": 0, "seqEnd": n - 1})
        ).json()["items"]
        if len(items) == n and all(i["status"] != "queued" for i in items):
            return items
        assert asyncio.get_running_loop().time() < deadline, items
        await asyncio.sleep(0.3)


async def _collect_caught_up(bootstrap: str, topic: str) -> None:
    """Wait until the collect consumer group has committed everything on the result topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="faasinfer-collect", enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer.topics()  # fetches the metadata
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            ends = await consumer.end_offsets(partitions)
            committed = {tp: (await consumer.committed(tp)) or 0 for tp in partitions}
            if all(committed[tp] >= ends[tp] for tp in partitions):
                return
            assert asyncio.get_running_loop().time() < deadline, (committed, ends)
            await asyncio.sleep(0.3)
    finally:
        await consumer.stop()


async def _redeliver_results(bootstrap: str, topic: str, times: int) -> int:
    reader = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("copy"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        records = [r for rs in (await reader.getmany(timeout_ms=3000)).values() for r in rs]
    finally:
        await reader.stop()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for _ in range(times):
            for r in reversed(records):  # duplicated and out of order
                await producer.send_and_wait(topic, r.value, key=r.key)
    finally:
        await producer.stop()
    return len(records)


async def _scenario(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        session = (await client.post("/register")).json()["uuid"]
        for seq, (name, topk) in enumerate(UPLOADS):
            response = await client.post(
                "/image",
                data={"uuid": session, "seq": str(seq), "topk": str(topk)},
                files={"payload": (name, photo(name))},
            )
            assert response.status_code == 202, response.text
        items = await _wait_for_results(client, session, len(UPLOADS))

        for item, (_, topk) in zip(items, UPLOADS, strict=True):
            assert item["status"] == "done", item
            assert len(item["predictions"]) == topk == len(item["scores"])
            assert set(item["predictions"]) <= IMAGENET
            assert item["scores"] == sorted(item["scores"], reverse=True)
            assert item["model"] == "resnet18:file:resnet18-test.pth"

        bootstrap = await _bootstrap(stack)
        result_topic = stack.env.get("RESULT_TOPIC", "inference-result")
        request_topic = stack.env.get("REQUEST_TOPIC", "inference-request")
        once = Counter({f"{session}:{seq}": 1 for seq in range(len(UPLOADS))})
        # What at-least-once could duplicate, counted: each image published once and inferred once.
        assert await messages_per_key(bootstrap, request_topic, session) == once, "duplicate publishes"
        assert await messages_per_key(bootstrap, result_topic, session) == once, "duplicate inferences"
        assert await _redeliver_results(bootstrap, result_topic, times=2) >= len(UPLOADS)
        assert await messages_per_key(bootstrap, result_topic, session) == Counter({k: 3 for k in once})
        await _collect_caught_up(bootstrap, result_topic)
        again = (await client.get("/result", params={"uuid": session, "seqStart": 0, "seqEnd": 99})).json()["items"]
        assert again == items  # two more copies of every result, reversed, changed nothing

    store = open_store(stack.env["DATABASE_URL"])
    rows = await store.get_range(session, 0, 99)
    await store.close()
    for row, item, (name, topk) in zip(rows, items, UPLOADS, strict=True):  # the stored rows are the answers
        assert (row.seq, row.status, row.topk, list(row.labels)) == (item["seq"], "done", topk, item["predictions"])
        assert row.content_hash == hashlib.sha256(photo(name)).hexdigest()


def test_register_upload_infer_collect_query(runtime_in_each_mode: Stack) -> None:
    children = set(child_processes(runtime_in_each_mode.process.pid))
    asyncio.run(_scenario(runtime_in_each_mode))

    runtime_in_each_mode.process.send_signal(signal.SIGINT)
    assert runtime_in_each_mode.process.wait(timeout=60) == 0, runtime_in_each_mode.log.read_text()
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker exits once its pipe closes
    while (survivors := {pid: _cmdline(pid) for pid in children if _state(pid) == "alive"}) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert not survivors, f"child processes (broker, workers) outlived the runtime: {survivors}"
    log = runtime_in_each_mode.log.read_text()
    assert "InferSelfManagedFunction: 2 worker processes" in log
    assert "Traceback" not in log, log


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()[:120]
    except OSError:
        return b""


def _state(pid: int) -> str:
    try:
        return "zombie" if (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z") else "alive"
    except OSError:
        return "zombie"


def test_built_artifacts_classify_photos_end_to_end(tmp_path: Path, sam_build: Path, local_stack: Launch) -> None:
    """``--build-dir``: every function runs from its ``sam build`` artifact through awslambdaric on CPython 3.12 (a
    packaging mistake fails here), infer on the engine its build baked in, no process with torch."""
    # The template's own engine folder (the run's shared cache would override it, as a shell variable does).
    env = {"INFER_MODEL": "efficientnet_lite0", "INFER_ENGINE_CACHE": "/var/task/engines"}
    with local_stack(tmp_path, ["--workers", "1", "--build-dir", str(sam_build)], env) as runtime:
        runtimes = [c for c in child_processes(runtime.process.pid).values() if "awslambdaric" in c]
        # one environment starts with the function (more as requests find it busy, up to --http-instances), and
        # /health has one of its own
        assert sum("functions.upload.app.handler" in c for c in runtimes) == 2
        assert sum("functions.collect.app.handler" in c for c in runtimes) == 1
        everything = _descendants(runtime.process.pid)  # infer's environment runs under its worker process
        assert sum("awslambdaric functions.infer.app.handler" in c for c in everything.values()) == 1
        assert not [pid for pid in everything if _maps_torch(pid)]
        items = asyncio.run(_classify(runtime.base_url, ["chelsea.jpg", "coffee.jpg", "rocket.jpg"]))
    top1 = [item["predictions"][0] for item in items]
    assert top1[0] in {"Egyptian cat", "tabby", "tiger cat"} and top1[1] == "espresso"
    assert top1[2] in {"missile", "projectile"}
    assert "Traceback" not in runtime.log_path.read_text()


def _descendants(pid: int) -> dict[int, str]:
    found = child_processes(pid)
    for child in list(found):
        found.update(_descendants(child))
    return found


def _maps_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


async def _classify(base_url: str, names: list[str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        session = (await client.post("/register")).json()["uuid"]
        for seq, name in enumerate(names):
            response = await client.post(
                "/image", data={"uuid": session, "seq": str(seq), "topk": "3"}, files={"payload": (name, photo(name))}
            )
            assert response.status_code == 202, response.text
        return await wait_all_done(client, session, len(names), timeout_s=120)
