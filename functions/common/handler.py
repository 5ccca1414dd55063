"""The shared edge of the Kafka-triggered functions: answer for records that never became messages."""

from __future__ import annotations

import logging
from typing import Any

from .contracts import InferenceResult
from .kafka_event import ParsedBatch, RejectedRecord, dlq_messages
from .producer import Producer

log = logging.getLogger(__name__)


def failed_for_invalid(batch: ParsedBatch[Any]) -> tuple[list[InferenceResult], list[RejectedRecord]]:
    """A request that names its (uuid, seq) but breaks the schema (e.g. topk 5000) is answered ``failed``;
    one that does not even say who it is for goes to the DLQ."""
    answered: list[InferenceResult] = []
    unanswerable = list(batch.rejected)
    for payload, record in batch.invalid:
        try:
            answered.append(
                InferenceResult(uuid=str(payload["uuid"]), seq=payload["seq"], status="failed", error=record.reason)
            )
        except (KeyError, ValueError, TypeError):
            unanswerable.append(record)
    return answered, unanswerable


async def dead_letter(producer: Producer, topic: str, rejected: list[RejectedRecord], function: str) -> None:
    if rejected:
        for record in rejected:
            log.warning(
                "%s: %s-%d@%d to %s: %s", function, record.topic, record.partition, record.offset, topic, record.reason
            )
        await producer.publish(topic, dlq_messages(rejected, function))
