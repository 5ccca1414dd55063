"""The collect handler on real Lambda Kafka events against SQLite and MariaDB."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from functions.collect import app
from functions.common import metrics
from functions.common.blobs import BlobNotFound, blob_store_from_url
from functions.common.store import RequestRow, open_store
from tests.helpers import apply_env, consume_all, load_event

SESSION = "3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47"


async def _seed(url: str, seqs: range) -> None:
    store = open_store(url)
    await store.create_session(SESSION)
    for seq in seqs:
        await store.add_request(RequestRow(SESSION, seq, 5, f"{SESSION}/{seq}.jpg", f"{seq:064d}", "image/jpeg"))
    await store.close()


async def _rows(url: str) -> dict[int, RequestRow]:
    store = open_store(url)
    rows = await store.get_range(SESSION, 0, 100)
    await store.close()
    return {r.seq: r for r in rows}


def _counted() -> Counter[str]:
    """This process's metrics of stored results (``METRICS_OUTPUT=prometheus``, the default)."""
    value = metrics.REGISTRY.get_sample_value
    return Counter(
        classified=value("faasinfer_images_classified_total"), failed=value("faasinfer_results_failed_total")
    )


def test_msk_event_upserts_once_and_quarantines_garbage(configured: dict[str, Any]) -> None:
    asyncio.run(_seed(configured["database_url"], range(3)))
    before = _counted()
    summary = app.handler(load_event("msk_collect"), None)

    # seq 0 twice (duplicate), seq 1 failed then done (done wins), one malformed, one unknown session
    assert summary == {"applied": 3, "duplicate": 1, "unknown": 1, "dead_lettered": 1, "classified": 2, "failed": 1}
    assert _counted() - before == Counter(classified=2, failed=1)  # the duplicate is not counted again
    rows = asyncio.run(_rows(configured["database_url"]))
    assert rows[0].status == "done" and rows[0].labels == ("tabby", "tiger cat") and rows[0].scores == (0.6, 0.3)
    assert rows[1].status == "done" and rows[1].labels == ("espresso",)
    assert rows[2].status == "queued"
    # The malformed result is on the DLQ as it came, with why, who and where from.
    [dead] = asyncio.run(consume_all(configured["kafka_bootstrap_servers"], configured["dlq_topic"], 1))
    assert dead.value == f'{{"uuid": "{SESSION}", "seq": "x"}}'.encode()
    headers = dict(dead.headers)
    assert headers["function"] == b"collect" and headers["source"] == b"inference-result-1@7"
    assert b"seq" in headers["error"]


def test_redelivery_and_late_failures_change_nothing(configured: dict[str, Any]) -> None:
    asyncio.run(_seed(configured["database_url"], range(3)))
    app.handler(load_event("msk_collect"), None)
    before = asyncio.run(_rows(configured["database_url"]))

    again = app.handler(load_event("msk_collect"), None)
    late = app.handler(load_event("selfmanaged_collect"), None)

    assert again["applied"] == 0 and again["duplicate"] == 4
    assert late == {
        "applied": 1, "duplicate": 1, "unknown": 0, "classified": 1, "failed": 0, "dead_lettered": 0
    }  # fmt: skip
    after = asyncio.run(_rows(configured["database_url"]))
    assert after[0] == before[0] and after[1] == before[1]  # a late `failed` never overwrites `done`
    assert after[2].status == "done" and after[2].labels == ("espresso",)


def test_blobs_of_done_requests_expire_when_configured(configured: dict[str, Any], monkeypatch: Any) -> None:
    apply_env(monkeypatch, blob_expire_on_done="true")
    asyncio.run(_seed(configured["database_url"], range(3)))
    blobs = blob_store_from_url(configured["blob_url"])

    async def put_all() -> None:
        for seq in range(3):
            await blobs.put(f"{SESSION}/{seq}.jpg", b"img", "image/jpeg")

    asyncio.run(put_all())
    app.handler(load_event("msk_collect"), None)  # seq 0 and 1 end done, seq 2 stays queued

    async def exists(seq: int) -> bool:
        try:
            await blobs.get(f"{SESSION}/{seq}.jpg")
            return True
        except BlobNotFound:
            return False

    assert [asyncio.run(exists(seq)) for seq in range(3)] == [False, False, True]
