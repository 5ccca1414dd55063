"""Collect function: Lambda Kafka event of ``inference-result`` → idempotent upserts keyed by (uuid, seq)."""

from __future__ import annotations

import logging
from typing import Any

from functions.common import blobs, loops
from functions.common import store as stores
from functions.common.contracts import InferenceResult
from functions.common.kafka_edge import auth as kafka_auth
from functions.common.kafka_edge import producer
from functions.common.kafka_edge.events import parse_messages
from functions.common.kafka_edge.outcomes import send_dead_letters, sort_records
from functions.common.metrics import record_results
from functions.common.settings import get_settings

from . import service

# Init phase: a wrong KafkaAuth or a missing KafkaSecretArn stops the cold start with a message naming it.
kafka_auth.check(get_settings())

log = logging.getLogger(__name__)


async def handle(event: dict[str, Any]) -> dict[str, int]:
    settings = get_settings()
    records = sort_records(parse_messages(event, InferenceResult), answer_invalid=False)
    expire = blobs.per_loop.get() if settings.blob_expire_on_done else None
    outcome = await service.process(stores.per_loop.get(), records.messages, expire)
    await send_dead_letters(producer.per_loop.get(), settings.dlq_topic, records.dead_letters, "collect")
    record_results(outcome.get("classified", 0), outcome.get("failed", 0))
    zeros = {**{k.value: 0 for k in service.Applied}, "classified": 0, "failed": 0}
    return {**zeros, **outcome, "dead_lettered": len(records.dead_letters)}


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    return loops.run_sync(handle(event))


# Called by the local runtime from the handler's thread at exit.
shutdown = loops.close_thread_loop
