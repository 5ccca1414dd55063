"""Outbox reconciliation: the request row is the source of truth; what stayed queued is published again."""

from __future__ import annotations

import logging
import time

from functions.common.contracts import InferenceRequest
from functions.common.db import Store
from functions.common.producer import Producer

log = logging.getLogger(__name__)


async def sweep(store: Store, producer: Producer, topic: str, older_than_s: float, limit: int) -> int:
    """Re-publish requests queued for longer than ``older_than_s`` (lost message, broker restart, failed publish).

    A duplicate this causes is absorbed by the idempotent collector. Broker errors raise: the next sweep retries.
    """
    now = time.time()
    stale = await store.stale_requests(now - older_than_s, limit)
    if not stale:
        return 0
    messages = [
        InferenceRequest(uuid=r.uuid, seq=r.seq, topk=r.topk, blob=r.blob_key, content_type=r.content_type)
        for r in stale
    ]
    await producer.publish(topic, [(m.key, m.model_dump_json().encode(), [("sweeper", b"1")]) for m in messages])
    await store.mark_published([(r.uuid, r.seq) for r in stale], now)
    log.warning("re-published %d requests queued for more than %.0fs", len(stale), older_than_s)
    return len(stale)
