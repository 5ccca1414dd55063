"""What becomes of one Kafka record, decided in one place, and the dead-letter headers that say why.

Every record of a Kafka event ends as exactly one of:
- a **message** the function processes (infer answers it ``done``, ``failed`` or ``retrying``; collect applies it);
- a **failed result** without processing: a request that names its ``(uuid, seq)`` but breaks the schema (topk 5000),
  or one that processing refused (``RecordFailed``: an undecodable image, a missing blob), so the client reads why;
- a **dead letter**: nothing can answer it (not UTF-8, not JSON, no ``uuid``/``seq``, an invalid result); its
  original bytes go to the dead-letter topic with the reason and origin in headers.

A failure of the function itself (database or broker down) is none of these: it raises, and the event-source
mapping retries the batch, then sends it to its on-failure destination with the same headers
(``dead_letter_headers``; ``runtime/esm/kafka.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from functions.common.contracts import InferenceRequest, InferenceResult
from functions.common.kafka_edge.events import ParsedBatch, RejectedRecord
from functions.common.kafka_edge.producer import Producer

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_REASON_BYTES = 1000  # a header, not a payload: a reason longer than this is cut


class RecordFailed(Exception):
    """This record cannot succeed, whatever is retried: it is answered ``failed`` with this reason, alone."""


def failed(uuid: str, seq: int, reason: str, model: str | None = None) -> InferenceResult:
    return InferenceResult(uuid=uuid, seq=seq, status="failed", error=reason, model=model)


def retrying(request: InferenceRequest, reason: str) -> InferenceResult:
    """Not answered this time (the model could not load): the row records why; the sweeper publishes it again."""
    return InferenceResult(uuid=request.uuid, seq=request.seq, status="retrying", error=reason)


@dataclass
class Outcomes(Generic[M]):
    """A batch's records, sorted: what to process, what is already answered, what goes to the dead-letter topic."""

    messages: list[M] = field(default_factory=list)
    answered: list[InferenceResult] = field(default_factory=list)
    dead_letters: list[RejectedRecord] = field(default_factory=list)


def sort_records(batch: ParsedBatch[M], answer_invalid: bool) -> Outcomes[M]:
    """With ``answer_invalid`` (requests), a record that breaks the schema but says whom it is for is answered
    ``failed``; otherwise (results: a malformed result is no answer) it is a dead letter like any broken record."""
    outcomes: Outcomes[M] = Outcomes(messages=list(batch.messages), dead_letters=list(batch.rejected))
    for payload, record in batch.invalid:
        answer = _failed_answer(payload, record.reason) if answer_invalid else None
        if answer is None:
            outcomes.dead_letters.append(record)
        else:
            outcomes.answered.append(answer)
    return outcomes


def _failed_answer(payload: dict[str, Any], reason: str) -> InferenceResult | None:
    try:
        return failed(str(payload["uuid"]), payload["seq"], reason)
    except (KeyError, ValueError, TypeError):  # no uuid or seq, or a seq that is no integer: nobody to answer
        return None


def dead_letter_headers(reason: str, function: str, source: str) -> list[tuple[str, bytes]]:
    """Why (``error``), who gave up (``function``), where the record came from (``source``: topic-partition@offset)."""
    return [
        ("error", reason.encode()[:MAX_REASON_BYTES]),
        ("function", function.encode()),
        ("source", source.encode()),
    ]


def source_of(topic: str, partition: int, offset: int) -> str:
    return f"{topic}-{partition}@{offset}"


def dead_letter_messages(
    records: Sequence[RejectedRecord], function: str
) -> list[tuple[str | None, bytes, list[tuple[str, bytes]]]]:
    """Messages for the dead-letter topic: each record's original key and bytes, the reason and origin in headers."""
    return [
        (
            None if r.key is None else r.key.decode("utf-8", "replace"),
            r.value,
            dead_letter_headers(r.reason, function, source_of(r.topic, r.partition, r.offset)),
        )
        for r in records
    ]


async def send_dead_letters(producer: Producer, topic: str, records: Sequence[RejectedRecord], function: str) -> None:
    for r in records:
        log.warning("%s: %s to %s: %s", function, source_of(r.topic, r.partition, r.offset), topic, r.reason)
    if records:
        await producer.publish(topic, dead_letter_messages(records, function))


__all__ = [
    "Outcomes",
    "RecordFailed",
    "dead_letter_headers",
    "dead_letter_messages",
    "failed",
    "retrying",
    "send_dead_letters",
    "sort_records",
    "source_of",
]
