"""The sweeper re-publishes accepted requests whose message never made it (outbox reconciliation)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from pydantic import ValidationError

from functions.common.contracts import InferenceResult
from functions.common.db import DatabaseStore, RequestRow
from functions.sweeper import app
from tests.helpers import apply_env, consume_all, load_event

SESSION = "6a1d2f38-4e8b-4b57-9a53-0c8f4f1d2e90"


async def _seed(url: str) -> None:
    store = DatabaseStore(url)
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


def test_stale_queued_requests_are_published_once_per_period(
    configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, sweep_after_s="60")
    asyncio.run(_seed(configured["database_url"]))

    first = app.handler(load_event("eventbridge_sweeper"), None)
    second = app.handler(load_event("eventbridge_sweeper"), None)

    assert first == {"republished": 3} and second == {"republished": 0}  # done and fresh ones are left alone
    records = asyncio.run(consume_all(configured["kafka_bootstrap_servers"], configured["request_topic"], 3))
    messages = sorted((json.loads(r.value) for r in records), key=lambda m: m["seq"])
    assert [(m["seq"], m["topk"], m["blob"]) for m in messages] == [(s, 2, f"{SESSION}/{s}") for s in range(3)]
    assert all(r.key == f"{SESSION}:{json.loads(r.value)['seq']}".encode() for r in records)


def test_only_scheduled_events_are_accepted(configured: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        app.handler({"eventSource": "aws:kafka"}, None)
