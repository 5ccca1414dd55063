"""Events the shim builds are exactly what Lambda delivers: powertools' models accept them."""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field

from aws_lambda_powertools.utilities.parser.models import KafkaMskEventModel, KafkaSelfManagedEventModel

from runtime.lambda_event import LambdaContext, kafka_event
from runtime.template import FunctionSpec, KafkaSource


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 1_545_084_650_987
    timestamp_type: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


RECORDS = [
    _Record("inference-request", 1, 7, b"u:1", b'{"a": 1}', headers=[("trace", b"hi")]),
    _Record("inference-request", 0, 3, None, b"\x00\x01binary"),
    _Record("inference-request", 1, 8, b"u:2", b"{}", timestamp_type=1),
]


def _source(kind: str) -> KafkaSource:
    return KafkaSource(
        "Requests",
        kind,
        "inference-request",
        10,
        0.5,
        "TRIM_HORIZON",
        "g",  # type: ignore[arg-type]
        stream_arn="arn:aws:kafka:us-east-1:123456789012:cluster/c/abc-1" if kind == "MSK" else None,
    )


def test_msk_event_shape_validates_and_round_trips() -> None:
    event = kafka_event(RECORDS, _source("MSK"), "b1:9092,b2:9092")
    parsed = KafkaMskEventModel.model_validate(copy.deepcopy(event))  # powertools decodes headers in place
    assert parsed.eventSourceArn == "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc-1"
    assert parsed.bootstrapServers == ["b1:9092", "b2:9092"]
    assert list(event["records"]) == ["inference-request-1", "inference-request-0"]
    first = event["records"]["inference-request-1"][0]
    assert first == {
        "topic": "inference-request",
        "partition": 1,
        "offset": 7,
        "timestamp": 1_545_084_650_987,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(b"u:1").decode(),
        "value": base64.b64encode(b'{"a": 1}').decode(),
        "headers": [{"trace": [104, 105]}],
    }
    assert event["records"]["inference-request-1"][1]["timestampType"] == "LOG_APPEND_TIME"
    assert "key" not in event["records"]["inference-request-0"][0]
    decoded = parsed.records["inference-request-1"][0]
    assert decoded.key == b"u:1" and decoded.value == '{"a": 1}' and decoded.headers == [{"trace": b"hi"}]


def test_self_managed_event_has_no_arn_and_validates() -> None:
    event = kafka_event(RECORDS[:1], _source("SelfManagedKafka"), "127.0.0.1:9092")
    assert event["eventSource"] == "SelfManagedKafka" and "eventSourceArn" not in event
    assert KafkaSelfManagedEventModel.model_validate(copy.deepcopy(event)).records["inference-request-1"][0].offset == 7


def test_context_carries_what_handlers_read() -> None:
    spec = FunctionSpec("InferFunction", "functions.infer.app.handler", timeout_s=300, memory_mb=3008)
    context = LambdaContext.for_function(spec)
    assert context.function_name == "InferFunction" and context.memory_limit_in_mb == 3008
    assert 299_000 < context.get_remaining_time_in_millis() <= 300_000
    assert context.invoked_function_arn.endswith(":function:InferFunction") and len(context.aws_request_id) == 36
