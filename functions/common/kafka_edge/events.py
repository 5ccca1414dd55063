"""Lambda Kafka events parsed at the edge with aws-lambda-powertools' models, one bad record never sinking the rest.

What becomes of a record that does not parse is decided in ``outcomes``."""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aws_lambda_powertools.utilities.parser.models import (
    KafkaMskEventModel,
    KafkaRecordModel,
    KafkaSelfManagedEventModel,
)
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RejectedRecord:
    """A record that did not become a message, and why (``outcomes`` decides what becomes of it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str


@dataclass
class ParsedBatch(Generic[M]):
    messages: list[M] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    # Raw JSON objects that failed the message schema, kept so a caller can still answer for them.
    invalid: list[tuple[dict[str, Any], RejectedRecord]] = field(default_factory=list)


def _event_model(event: dict[str, Any]) -> type[KafkaMskEventModel] | type[KafkaSelfManagedEventModel]:
    source = event.get("eventSource")
    if source == "aws:kafka":
        return KafkaMskEventModel
    if source == "SelfManagedKafka":
        return KafkaSelfManagedEventModel
    raise ValueError(f"not a Lambda Kafka event (eventSource={source!r})")


def _raw_records(event: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for records in (event.get("records") or {}).values():
        yield from records


def kafka_records(event: dict[str, Any]) -> tuple[list[KafkaRecordModel], list[RejectedRecord]]:
    """Validate the event; if one record is broken (e.g. a value that is not UTF-8), keep the good ones."""
    model = _event_model(event)
    try:
        parsed = model.model_validate(copy.deepcopy(event))
        return [r for records in parsed.records.values() for r in records], []
    except ValidationError:
        model.model_validate({**copy.deepcopy(event), "records": {}})  # the envelope itself must be valid
    good: list[KafkaRecordModel] = []
    bad: list[RejectedRecord] = []
    for raw in _raw_records(event):
        try:
            good.append(KafkaRecordModel.model_validate(copy.deepcopy(raw)))
        except ValidationError as exc:
            bad.append(_rejected_raw(raw, f"undecodable record: {exc.errors()[0]['msg']}"))
    return good, bad


def parse_messages(event: dict[str, Any], message_type: type[M]) -> ParsedBatch[M]:
    records, rejected = kafka_records(event)
    batch: ParsedBatch[M] = ParsedBatch(rejected=rejected)
    for record in records:
        value = record.value if isinstance(record.value, str) else ""
        try:
            payload = json.loads(value)
        except json.JSONDecodeError as exc:
            batch.rejected.append(_rejected(record, f"value is not JSON: {exc.msg}"))
            continue
        try:
            batch.messages.append(message_type.model_validate(payload))
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
            rejected_record = _rejected(record, f"invalid {message_type.__name__}: {reason}")
            if isinstance(payload, dict):
                batch.invalid.append((payload, rejected_record))
            else:
                batch.rejected.append(rejected_record)
    if batch.rejected or batch.invalid:
        log.warning("%d of %d records rejected", len(batch.rejected) + len(batch.invalid), len(records))
    return batch


def _rejected(record: KafkaRecordModel, reason: str) -> RejectedRecord:
    value = record.value.encode() if isinstance(record.value, str) else b""
    return RejectedRecord(record.topic, record.partition, record.offset, record.key, value, reason)


def _rejected_raw(raw: dict[str, Any], reason: str) -> RejectedRecord:
    def b64(v: Any) -> bytes:
        try:
            return base64.b64decode(v) if isinstance(v, str) else b""
        except ValueError:
            return b""

    key = raw.get("key")
    return RejectedRecord(
        str(raw.get("topic", "")),
        int(raw.get("partition", -1)),
        int(raw.get("offset", -1)),
        None if key is None else b64(key),
        b64(raw.get("value")),
        reason,
    )
