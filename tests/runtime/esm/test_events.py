"""Events the shim builds are exactly what Lambda delivers: powertools' models accept them."""

from __future__ import annotations

import base64
import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aws_lambda_powertools.utilities.parser.models import KafkaMskEventModel, KafkaSelfManagedEventModel

from runtime.esm.events import LambdaContext, failure_record, kafka_event
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


def test_edge_records_get_lambdas_defaults() -> None:
    odd = [_Record("t", 0, 1, None, None, timestamp_type=-1)]  # no value, no known timestamp type
    no_arn = KafkaSource("S", "MSK", "t", 1, 0.0, "LATEST", "g")  # type: ignore[arg-type]
    event = kafka_event(odd, no_arn, "b:9092")
    [entry] = event["records"]["t-0"]
    assert entry["value"] == "" and entry["timestampType"] == "CREATE_TIME"
    assert event["eventSourceArn"] == "arn:aws:kafka:local:000000000000:cluster/local/local"  # no ARN: a local one


def test_context_log_group_and_an_expired_deadline() -> None:
    context = LambdaContext(function_name="F", memory_limit_in_mb=128, timeout_s=0)
    assert context.log_group_name == "/aws/lambda/F" and context.get_remaining_time_in_millis() == 0
    named = LambdaContext(function_name="F", memory_limit_in_mb=128, timeout_s=1, log_group_name="/custom")
    assert named.log_group_name == "/custom"


def test_failure_record_is_lambdas_metadata_only_on_failure_record() -> None:
    records = [*RECORDS, _Record("inference-request", 1, 9, b"k", b"vvvv", timestamp=1_545_084_651_000)]
    record = failure_record(records, _source("MSK"), "b1:9092", "InferFunction", 4, "RetryAttemptsExhausted")
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 4
    assert record["requestContext"]["functionArn"] == "arn:aws:lambda:local:000000000000:function:InferFunction"
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z") and len(record["timestamp"]) == 24
    batch = record["KafkaBatchInfo"]
    assert batch["batchSize"] == 4 and batch["bootstrapServers"] == "b1:9092"
    assert batch["payloadSize"] == sum(len(r.value or b"") + len(r.key or b"") for r in records) == 29
    assert batch["eventSourceArn"] == "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc-1"
    assert batch["recordsInfo"] == {
        "inference-request-0": {
            "firstRecordOffset": "3", "firstRecordTimestamp": "2018-12-17T22:10:50.987Z",
            "lastRecordOffset": "3", "lastRecordTimestamp": "2018-12-17T22:10:50.987Z",
        },
        "inference-request-1": {
            "firstRecordOffset": "7", "firstRecordTimestamp": "2018-12-17T22:10:50.987Z",
            "lastRecordOffset": "9", "lastRecordTimestamp": "2018-12-17T22:10:51.000Z",
        },
    }  # fmt: skip
    assert uuid.UUID(record["requestContext"]["requestId"]).version == 4
    sent = datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 5  # when the record was written
    self_managed = failure_record(records[:1], _source("SelfManagedKafka"), "b", "F", 1, "RecordAgeExceeded")
    assert "eventSourceArn" not in self_managed["KafkaBatchInfo"]
    no_arn = KafkaSource("S", "MSK", "t", 1, 0.0, "LATEST", "g")  # type: ignore[arg-type]
    local = failure_record(records[:1], no_arn, "b", "F", 1, "RecordAgeExceeded")
    assert local["KafkaBatchInfo"]["eventSourceArn"] == "arn:aws:kafka:local:000000000000:cluster/local/local"
