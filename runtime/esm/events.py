"""Lambda-shaped Kafka events and invocation contexts, built exactly as the event-source mapping delivers them."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.template import FunctionSpec, KafkaSource

_TIMESTAMP_TYPES = {0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}


class Record(Protocol):
    """The fields of aiokafka's ``ConsumerRecord`` an event is built from."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def timestamp_type(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


# A synchronous invocation's payload, request and response each; a Kafka event-source mapping also ends a batch
# before its event passes it (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
LAMBDA_MAX_PAYLOAD = 6 * 1024 * 1024
KAFKA_EVENT_ENVELOPE = 1024  # what an event holds besides its records (source, ARN, bootstrap servers), at most


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def record_bytes(r: Record) -> int:
    """At most what one record adds to a Kafka event's JSON: key and value in base64, each header byte as an
    integer of up to three digits and a separator, the fields around them."""
    headers = sum(len(name) + 5 * len(value) + 8 for name, value in r.headers)
    return 200 + 2 * len(r.topic) + _b64_len(r.key) + _b64_len(r.value) + headers


def _b64_len(data: bytes | None) -> int:
    return (len(data or b"") + 2) // 3 * 4


def kafka_event(records: Sequence[Record], source: KafkaSource, bootstrap: str) -> dict[str, Any]:
    """Records grouped by ``topic-partition`` in offset order; key/value base64; headers as byte-int arrays."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        entry: dict[str, Any] = {
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "timestampType": _TIMESTAMP_TYPES.get(r.timestamp_type, "CREATE_TIME"),
        }
        if r.key is not None:
            entry["key"] = _b64(r.key)
        entry["value"] = _b64(r.value or b"")
        entry["headers"] = [{name: list(value)} for name, value in r.headers]
        grouped.setdefault(f"{r.topic}-{r.partition}", []).append(entry)
    event: dict[str, Any] = {"eventSource": "aws:kafka" if source.kind == "MSK" else "SelfManagedKafka"}
    if source.kind == "MSK":
        event["eventSourceArn"] = source.stream_arn or "arn:aws:kafka:local:000000000000:cluster/local/local"
    event["bootstrapServers"] = bootstrap
    event["records"] = grouped
    return event


@dataclass
class LambdaContext:
    """The attributes and method handlers use from Lambda's context object."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    @classmethod
    def for_function(cls, spec: FunctionSpec) -> LambdaContext:
        return cls(function_name=spec.name, memory_limit_in_mb=spec.memory_mb, timeout_s=spec.timeout_s)


def _iso(timestamp_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp_ms / 1000)) + f".{timestamp_ms % 1000:03d}Z"


def failure_record(
    records: Sequence[Record], source: KafkaSource, bootstrap: str, function: str, attempts: int, condition: str
) -> dict[str, Any]:
    """The metadata-only record a Kafka event-source mapping sends to an SQS/SNS on-failure destination: where the
    failed batch was (topic-partition, offsets, timestamps), never the records themselves. ``condition``:
    ``RetryAttemptsExhausted`` or ``RecordAgeExceeded``."""
    info: dict[str, dict[str, str]] = {}
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        entry = info.setdefault(
            f"{r.topic}-{r.partition}",
            {"firstRecordOffset": str(r.offset), "firstRecordTimestamp": _iso(r.timestamp)},
        )
        entry["lastRecordOffset"], entry["lastRecordTimestamp"] = str(r.offset), _iso(r.timestamp)
    batch: dict[str, Any] = {
        "batchSize": len(records),
        "bootstrapServers": bootstrap,
        "payloadSize": sum(len(r.value or b"") + len(r.key or b"") for r in records),
        "recordsInfo": info,
    }
    if source.kind == "MSK":
        batch["eventSourceArn"] = source.stream_arn or "arn:aws:kafka:local:000000000000:cluster/local/local"
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:local:000000000000:function:{function}",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": _iso(int(time.time() * 1000)),
        "KafkaBatchInfo": batch,
    }
