"""Sweeper function: a scheduled (EventBridge) handler re-publishing requests that stayed queued too long."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from functions.common import loops
from functions.common import store as stores
from functions.common.kafka_edge import auth as kafka_auth
from functions.common.kafka_edge import producer
from functions.common.settings import get_settings

from . import service

# Init phase: a wrong KafkaAuth or a missing KafkaSecretArn stops the cold start with a message naming it.
kafka_auth.check(get_settings())


async def handle(event: dict[str, Any]) -> dict[str, int]:
    EventBridgeModel.model_validate(event)  # a scheduled event, nothing else
    settings = get_settings()
    swept = await service.sweep(
        stores.per_loop.get(),
        producer.per_loop.get(),
        settings.request_topic,
        settings.sweep_after_s,
        settings.sweep_batch,
        settings.max_attempts,
    )
    return {"republished": swept.republished, "failed": swept.failed}


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    return loops.run_sync(handle(event))


# Called by the local runtime from the handler's thread at exit.
shutdown = loops.close_thread_loop
