"""The sweeper re-publishes accepted requests whose message never made it (outbox reconciliation)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from functions.common.contracts import InferenceResult
from functions.common.store import RequestRow, open_store
from functions.sweeper import app
from tests.helpers import apply_env, consume_all, load_event

SESSION = "6a1d2f38-4e8b-4b57-9a53-0c8f4f1d2e90"


async def _seed(url: str) -> None:
    store = open_store(url)
    await store.create_session(SESSION)
    old = time.time() - 600
    for seq in range(3):  # accepted ten minutes ago, never processed (message lost)
        await store.add_request(
            RequestRow(SESSION, seq, 2, f"{SESSION}/{seq}", "a" * 64, "image/png", submitted_at=old)
        )
    await store.add_request(RequestRow(SESSION, 3, 2, f"{SESSION}/3", "a" * 64, "image/png", submitted_at=old))
    await store.apply_result(InferenceResult(uuid=SESSION, seq=3, status="done", labels=["x"], scores=[1.0]))
    await store.add_request(RequestRow(SESSION, 4, 2, f"{SESSION}/4", "a" * 64, "image/png", submitted_at=time.time()))
    await store.close()


async def _rows(url: str, last_seq: int) -> list[RequestRow]:
    store = open_store(url)
    try:
        return await store.get_range(SESSION, 0, last_seq)
    finally:
        await store.close()


def test_a_sweep_the_broker_does_not_take_marks_nothing_published(
    app_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka unreachable: the sweep fails (the next one retries) and every stale request stays due, its attempts
    not counted: a request is marked re-published only once the broker took it."""
    apply_env(monkeypatch, sweep_after_s="60", publish_timeout_s="2")
    asyncio.run(_seed(app_settings["database_url"]))
    with pytest.raises(KafkaError):
        app.handler(load_event("eventbridge_sweeper"), None)

    assert [(r.seq, r.attempts) for r in asyncio.run(_rows(app_settings["database_url"], 2))] == [
        (0, 0), (1, 0), (2, 0)
    ]  # fmt: skip


def test_stale_queued_requests_are_published_once_per_period(
    configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, sweep_after_s="60")
    asyncio.run(_seed(configured["database_url"]))

    first = app.handler(load_event("eventbridge_sweeper"), None)
    second = app.handler(load_event("eventbridge_sweeper"), None)

    assert first == {"republished": 3, "failed": 0} and second == {
        "republished": 0,
        "failed": 0,
    }  # done and fresh ones are left alone
    records = asyncio.run(consume_all(configured["kafka_bootstrap_servers"], configured["request_topic"], 3))
    messages = sorted((json.loads(r.value) for r in records), key=lambda m: m["seq"])
    assert [(m["seq"], m["topk"], m["blob"]) for m in messages] == [(s, 2, f"{SESSION}/{s}") for s in range(3)]
    assert all(r.key == f"{SESSION}:{json.loads(r.value)['seq']}".encode() for r in records)


def test_each_re_publish_doubles_the_wait_before_the_next(
    configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request waiting its turn behind a long backlog is not re-sent every period (each copy adds to the
    backlog it waits behind): after the upload's publish it waits 60 s, after a re-publish 120 s, then 240 s."""
    apply_env(monkeypatch, sweep_after_s="60")
    now = time.time()
    # seq: (when it was submitted, when the sweeper re-published it, one time per entry)
    history = {
        0: (now - 1000, [now - 90]), 1: (now - 1000, [now - 130]), 2: (now - 61, []),
        3: (now - 1000, [now - 500, now - 200]), 4: (now - 1000, [now - 500, now - 250]), 5: (now - 59, []),
    }  # fmt: skip

    async def seed() -> None:
        store = open_store(configured["database_url"])
        await store.create_session(SESSION)
        for seq, (submitted, republished) in history.items():
            await store.add_request(
                RequestRow(SESSION, seq, 2, f"{SESSION}/{seq}", "a" * 64, "image/png", submitted_at=submitted)
            )
            for at in republished:
                await store.mark_published([(SESSION, seq)], at)
        await store.close()

    asyncio.run(seed())
    assert app.handler(load_event("eventbridge_sweeper"), None) == {"republished": 3, "failed": 0}
    records = asyncio.run(consume_all(configured["kafka_bootstrap_servers"], configured["request_topic"], 3))
    assert sorted(json.loads(r.value)["seq"] for r in records) == [1, 2, 4]  # 130 > 120, 61 > 60, 250 > 240


def test_only_scheduled_events_are_accepted(configured: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        app.handler({"eventSource": "aws:kafka"}, None)


def test_a_request_never_classified_fails_after_its_attempts_saying_why(
    configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, sweep_after_s="0", max_attempts="2")

    async def seed() -> None:
        store = open_store(configured["database_url"])
        await store.create_session(SESSION)
        for seq in (0, 1):
            await store.add_request(RequestRow(SESSION, seq, 2, "k", "a" * 64, "image/png", submitted_at=time.time()))
        await store.apply_result(  # what infer says when it cannot load its model; the row stays queued
            InferenceResult(uuid=SESSION, seq=0, status="retrying", error="model unavailable: no weights")
        )
        await store.close()

    asyncio.run(seed())
    sweeps = [app.handler(load_event("eventbridge_sweeper"), None) for _ in range(4)]

    assert sweeps == [
        {"republished": 2, "failed": 0},
        {"republished": 2, "failed": 0},
        {"republished": 0, "failed": 2},
        {"republished": 0, "failed": 0},
    ]
    first, second = asyncio.run(_rows(configured["database_url"], 1))
    assert (first.status, second.status) == ("failed", "failed")
    assert first.error is not None and first.error.startswith("not classified after 3 attempts over")
    assert first.error.endswith("last error: model unavailable: no weights")
    assert second.error is not None and "no result came back" in second.error


def test_tables_of_an_earlier_release_gain_the_new_columns(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"

    async def run() -> int:
        import sqlite3

        with sqlite3.connect(tmp_path / "old.db") as old:  # the requests table as the first release made it
            old.execute(
                "CREATE TABLE requests (uuid VARCHAR(36) NOT NULL, seq BIGINT NOT NULL, topk INTEGER NOT NULL,"
                " blob_key VARCHAR(512) NOT NULL, content_hash CHAR(64) NOT NULL, content_type VARCHAR(100) NOT NULL,"
                " status VARCHAR(16) NOT NULL, labels TEXT, scores TEXT, error TEXT, model VARCHAR(100),"
                " submitted_at DOUBLE NOT NULL, finished_at DOUBLE, published_at DOUBLE, PRIMARY KEY (uuid, seq))"
            )
        store = open_store(url)
        try:
            await store.create_session(SESSION)
            await store.add_request(RequestRow(SESSION, 0, 1, "k", "a" * 64, "image/png", submitted_at=1.0))
            await store.mark_published([(SESSION, 0)], 2.0)
            row = await store.get_request(SESSION, 0)
        finally:
            await store.close()
        assert row is not None
        return row.attempts

    assert asyncio.run(run()) == 1
