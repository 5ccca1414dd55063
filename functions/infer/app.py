"""Infer function: Lambda Kafka event of ``inference-request`` → one ``inference-result`` message per record."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from functions.common import blobs, loops
from functions.common.contracts import InferenceRequest
from functions.common.image_limits import ImageLimits
from functions.common.kafka_edge import auth as kafka_auth
from functions.common.kafka_edge import producer
from functions.common.kafka_edge.events import parse_messages
from functions.common.kafka_edge.outcomes import retrying, send_dead_letters, sort_records
from functions.common.settings import get_settings

from . import service
from .config import model_spec
from .loading import load_classifier
from .model import Classifier, ModelUnavailable

# Init phase: a wrong KafkaAuth or a missing KafkaSecretArn stops the cold start with a message naming it.
kafka_auth.check(get_settings())

log = logging.getLogger(__name__)

_classifier: Classifier | None = None
_pool: ThreadPoolExecutor | None = None


def classifier() -> Classifier:
    """Loaded once per process (cold start), reused by every invocation."""
    global _classifier
    if _classifier is None:
        _classifier = load_classifier(model_spec(get_settings()))
    return _classifier


def init() -> None:
    """Called by the local runtime when a worker starts (Lambda's init phase): a bad model fails before any event."""
    classifier()


# Lambda's init phase (AWS_LAMBDA_RUNTIME_API is Lambda's, and the local runtime's for built artifacts): the engine
# is loaded and checked before the first event, so a missing, damaged or foreign engine fails the init naming its
# path instead of every invocation. The in-process local runtime calls ``init`` itself.
if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
    init()


def decode_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(get_settings().infer_decode_workers, thread_name_prefix="decode")
    return _pool


async def handle(event: dict[str, Any]) -> dict[str, int]:
    settings = get_settings()
    records = sort_records(parse_messages(event, InferenceRequest), answer_invalid=True)
    try:
        model = classifier()
    except ModelUnavailable as exc:  # retried by the sweeper, bounded; the row says why meanwhile
        log.error("model unavailable: %s", exc)
        results = records.answered + [retrying(r, f"model unavailable: {exc}") for r in records.messages]
    else:
        results = records.answered + await service.process(
            records.messages,
            blobs.per_loop.get(),
            model,
            decode_pool(),
            settings.infer_max_batch,
            ImageLimits.of(settings),
        )
    kafka = producer.per_loop.get()
    await kafka.publish(settings.result_topic, [(r.key, r.model_dump_json().encode(), []) for r in results])
    await send_dead_letters(kafka, settings.dlq_topic, records.dead_letters, "infer")
    done, failed = (sum(r.status == status for r in results) for status in ("done", "failed"))
    retried = len(results) - done - failed
    return {"done": done, "failed": failed, "retrying": retried, "dead_lettered": len(records.dead_letters)}


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    return loops.run_sync(handle(event))


# Called by the local runtime from the handler's thread at exit.
shutdown = loops.close_thread_loop
