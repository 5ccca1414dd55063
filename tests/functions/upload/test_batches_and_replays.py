"""Batches are all-or-nothing; a replay never changes a stored request and publishes at most once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from functions.common.kafka_edge import producer
from functions.common.store import open_store
from tests.helpers import photo, unique

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _session(client: httpx.AsyncClient) -> str:
    return str((await client.post("/register")).json()["uuid"])


async def _published(bootstrap: str, topic: str, quiet_s: float = 2.0) -> list[dict[str, Any]]:
    """Every message of the topic: read until nothing more arrives for ``quiet_s``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=unique("r"))
    await consumer.start()
    messages: list[dict[str, Any]] = []
    try:
        while batch := await consumer.getmany(timeout_ms=int(quiet_s * 1000)):
            messages += [json.loads(r.value) for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return messages


async def _stored(configured: dict[str, Any], session: str) -> list[tuple[int, str]]:
    store = open_store(configured["database_url"])
    try:
        return [(r.seq, r.blob_key) for r in await store.get_range(session, 0, 1000)]
    finally:
        await store.close()


async def test_batch_with_a_conflicting_file_stores_and_publishes_nothing(
    client: httpx.AsyncClient, configured: dict[str, Any]
) -> None:
    session = await _session(client)
    taken = await client.post(
        "/image", data={"uuid": session, "seq": "11", "topk": "2"}, files={"payload": ("a.jpg", photo("coffee.jpg"))}
    )
    assert taken.status_code == 202
    files = [("payload", (name, photo(name))) for name in ("chelsea.jpg", "camera.png", "rocket.jpg")]
    response = await client.post("/images", data={"uuid": session, "seqStart": "10", "topk": "2"}, files=files)

    assert response.status_code == 409
    assert response.json()["error"].startswith("payload[1]: seq 11 of session")
    assert [seq for seq, _ in await _stored(configured, session)] == [11]  # seq 10 was not stored
    published = await _published(configured["kafka_bootstrap_servers"], configured["request_topic"])
    assert [m["seq"] for m in published] == [11]
    stored = sorted(p.name for p in (Path(configured["blob_url"].removeprefix("file://")) / session).iterdir())
    assert len(stored) == 1 and stored[0].startswith("11-")


async def test_batch_with_a_bad_file_late_stores_nothing(client: httpx.AsyncClient, configured: dict[str, Any]) -> None:
    session = await _session(client)
    files = [("payload", ("a.jpg", photo("chelsea.jpg"))), ("payload", ("b.jpg", photo("coffee.jpg")[:-700]))]
    response = await client.post("/images", data={"uuid": session, "seqStart": "0", "topk": "1"}, files=files)
    assert response.status_code == 400 and response.json()["error"].startswith("payload[1]: image is corrupt")
    assert await _stored(configured, session) == []


async def test_same_image_with_another_topk_conflicts_and_keeps_the_first(
    client: httpx.AsyncClient, configured: dict[str, Any]
) -> None:
    session = await _session(client)
    form = {"uuid": session, "seq": "0", "topk": "3"}
    first = await client.post("/image", data=form, files={"payload": ("a.jpg", photo())})
    other = await client.post("/image", data={**form, "topk": "5"}, files={"payload": ("a.jpg", photo())})
    assert (first.status_code, other.status_code) == (202, 409)
    assert "already holds this image with topk 3" in other.json()["error"]
    store = open_store(configured["database_url"])
    try:
        row = await store.get_request(session, 0)
    finally:
        await store.close()
    assert row is not None and row.topk == 3


async def test_concurrent_replays_of_a_queued_image_publish_it_once(
    client: httpx.AsyncClient, configured: dict[str, Any]
) -> None:
    session = await _session(client)
    form = {"uuid": session, "seq": "7", "topk": "1"}
    responses = await asyncio.gather(
        *(client.post("/image", data=form, files={"payload": ("a.jpg", photo())}) for _ in range(30))
    )
    assert [r.status_code for r in responses] == [202] * 30
    published = await _published(configured["kafka_bootstrap_servers"], configured["request_topic"])
    assert [(m["uuid"], m["seq"]) for m in published] == [(session, 7)]


async def test_a_replay_after_a_failed_publish_publishes(
    client: httpx.AsyncClient, configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await _session(client)
    form = {"uuid": session, "seq": "1", "topk": "1"}
    kafka = producer.per_loop.get()
    real_publish = kafka.publish

    async def broker_down(*args: Any, **kwargs: Any) -> None:
        raise TimeoutError("broker did not acknowledge")

    monkeypatch.setattr(kafka, "publish", broker_down)
    failed = await client.post("/image", data=form, files={"payload": ("a.jpg", photo())})
    store = open_store(configured["database_url"])
    try:  # the accepted row stays, queued, so that the sweeper (or this replay) publishes it
        kept = await store.get_request(session, 1)
    finally:
        await store.close()
    assert kept is not None and kept.status == "queued" and failed.json()["error"].startswith("a backing service")
    monkeypatch.setattr(kafka, "publish", real_publish)
    retried = await client.post("/image", data=form, files={"payload": ("a.jpg", photo())})
    again = await client.post("/image", data=form, files={"payload": ("a.jpg", photo())})

    assert (failed.status_code, retried.status_code, again.status_code) == (503, 202, 202)
    published = await _published(configured["kafka_bootstrap_servers"], configured["request_topic"])
    assert [m["seq"] for m in published] == [1]
