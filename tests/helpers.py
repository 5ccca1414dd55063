"""Test helpers: event fixtures, settings, photos, Kafka round trips."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from PIL import Image

from functions.common import loops
from functions.common.settings import reset_settings
from tools.launcher import Launched

EVENTS = Path(__file__).parent / "events"
Launch = Callable[..., AbstractContextManager[Launched]]  # tools.launcher.launched, from the local_stack fixture
PHOTOS = Path(__file__).resolve().parent.parent / "demo" / "photos"


def load_event(name: str) -> dict[str, Any]:
    """A real AWS event shape from ``tests/events/<name>.json``."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def photo(name: str = "chelsea.jpg") -> bytes:
    return (PHOTOS / name).read_bytes()


def photos() -> Iterator[tuple[str, bytes]]:
    for path in sorted(PHOTOS.iterdir()):
        if path.suffix in (".jpg", ".png"):
            yield path.name, path.read_bytes()


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=120 if mode in ("L", "P") else None).save(buffer, format=fmt)
    return buffer.getvalue()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def apply_env(monkeypatch: Any, **env: str) -> None:
    """Set environment variables the settings read, and forget cached settings and resources."""
    for key, value in env.items():
        monkeypatch.setenv(key.upper(), value)
    reset_settings()
    loops.reset_all()


async def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0) -> list[Any]:
    """Read ``expected`` records of a topic from the beginning (fails the test if fewer arrive in time)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=unique("reader"),
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    assert len(records) >= expected, f"{topic}: expected {expected} records, got {len(records)}"
    return records


async def messages_per_key(bootstrap: str, topic: str, session: str) -> Counter[str]:
    """How many messages the topic holds, up to its end now, per ``uuid:seq`` key of ``session``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    keys: Counter[str] = Counter()
    try:
        await consumer.topics()  # fetches the metadata
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = asyncio.get_running_loop().time() + 30
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            assert asyncio.get_running_loop().time() < deadline, f"{topic} not read to its end in time"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                keys.update(k for r in records if r.key and (k := r.key.decode()).startswith(session))
    finally:
        await consumer.stop()
    return keys


UPLOAD_NAMES = ("chelsea.jpg", "coffee.jpg", "camera.png", "rocket.jpg", "astronaut.jpg")


async def upload_with_retry(client: httpx.AsyncClient, session: str, seq: int, counts: dict[int, int]) -> None:
    """Upload like a careful client: retry on 503 (the documented answer while a dependency is down)."""
    name = UPLOAD_NAMES[seq % len(UPLOAD_NAMES)]
    for _ in range(60):
        response = await client.post(
            "/image", data={"uuid": session, "seq": str(seq), "topk": "3"}, files={"payload": (name, photo(name))}
        )
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        if response.status_code == 202:
            return
        assert response.status_code == 503, response.text
        assert "unavailable" in response.json()["error"]
        await asyncio.sleep(0.5)
    raise AssertionError(f"seq {seq} never accepted")


async def wait_all_done(client: httpx.AsyncClient, session: str, n: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        items = (await client.get("/result", params={"uuid": session, "seqStart": 0, "seqEnd": n - 1})).json()["items"]
        if len(items) == n and all(i["status"] == "done" for i in items):
            return list(items)
        assert time.monotonic() < deadline, [i["status"] for i in items]
        await asyncio.sleep(0.5)


def child_processes(pid: int) -> dict[int, str]:
    """Child processes of ``pid`` (one level) with their command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


async def run_sql(url: str, *statements: str) -> None:
    """Statements on the store's database behind its back (a plain ``databases`` connection, not the store's pool)."""
    from databases import Database

    from functions.common.store import normalise_url

    db = Database(normalise_url(url))
    await db.connect()
    try:
        for statement in statements:
            await db.execute(statement)
    finally:
        await db.disconnect()
