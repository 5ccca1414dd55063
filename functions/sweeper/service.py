"""Outbox reconciliation: the request row is the source of truth; what stayed queued is published again."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from functions.common.contracts import InferenceRequest, InferenceResult
from functions.common.kafka_edge.producer import Producer
from functions.common.store import RequestRow, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swept:
    republished: int
    failed: int


async def sweep(
    store: Store, producer: Producer, topic: str, older_than_s: float, limit: int, max_attempts: int
) -> Swept:
    """Re-publish requests queued for longer than ``older_than_s`` since their last publish (lost message, broker
    restart, failed publish, infer failing), doubling the wait after each re-publish (up to ``MAX_BACKOFF``); one
    already re-published
    ``max_attempts`` times becomes ``failed``, saying so.

    The backoff bounds the duplicates a long but healthy backlog costs: a request that waits its turn behind a
    burst is published again once per doubling period, not once per period (each copy is more work for the same
    backlog). A duplicate is absorbed by the idempotent collector. Broker errors raise: the next sweep retries.
    """
    now = time.time()
    stale = await store.stale_requests(backoff_cutoffs(now, older_than_s, max_attempts), limit)
    if not stale:
        return Swept(0, 0)
    exhausted = [r for r in stale if r.attempts >= max_attempts]
    if exhausted:
        await store.apply_results([_given_up(r, now) for r in exhausted])
        log.error("%d requests failed: not classified after %d attempts", len(exhausted), max_attempts + 1)
    retry = [r for r in stale if r.attempts < max_attempts]
    messages = [
        InferenceRequest(uuid=r.uuid, seq=r.seq, topk=r.topk, blob=r.blob_key, content_type=r.content_type)
        for r in retry
    ]
    await producer.publish(topic, [(m.key, m.model_dump_json().encode(), [("sweeper", b"1")]) for m in messages])
    await store.mark_published([(r.uuid, r.seq) for r in retry], now)
    if retry:
        log.warning("re-published %d requests queued for more than %.0fs", len(retry), older_than_s)
    return Swept(len(retry), len(exhausted))


MAX_BACKOFF = 4  # the wait stops doubling at 4 x SWEEP_AFTER_S: a request that is never answered fails in 19 min


def backoff_cutoffs(now: float, after_s: float, max_attempts: int) -> list[float]:
    """Per attempt count, the last publish time before which a request is due: ``after_s`` after the upload's
    publish, then twice as long after each re-publish, up to ``MAX_BACKOFF`` times as long."""
    return [now - after_s * min(2**attempts, MAX_BACKOFF) for attempts in range(max_attempts + 1)]


def _given_up(row: RequestRow, now: float) -> InferenceResult:
    why = (
        f"last error: {row.error}"
        if row.error
        else "no result came back (the infer function is failing or not running; see its logs and the DLQ topic)"
    )
    reason = f"not classified after {row.attempts + 1} attempts over {now - row.submitted_at:.0f} s; {why}"
    return InferenceResult(uuid=row.uuid, seq=row.seq, status="failed", error=reason, model=None)
