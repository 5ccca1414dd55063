"""Parsing Lambda Kafka events at the edge: broken records are set aside, the rest are kept."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from pydantic import ValidationError

from functions.common.contracts import InferenceRequest
from functions.common.kafka_edge.events import parse_messages
from tests.helpers import load_event


def _with_records(*values: bytes) -> dict[str, object]:
    event = copy.deepcopy(load_event("selfmanaged_infer"))
    template = event["records"]["inference-request-0"][0]
    event["records"] = {
        "inference-request-0": [
            {**template, "offset": i, "value": base64.b64encode(v).decode()} for i, v in enumerate(values)
        ]
    }
    return event


GOOD = json.dumps({"uuid": "u", "seq": 1, "topk": 3, "blob": "u/1.jpg"}).encode()


def test_fixtures_parse_into_messages() -> None:
    batch = parse_messages(load_event("selfmanaged_infer"), InferenceRequest)
    assert [m.seq for m in batch.messages] == [10, 11] and not batch.rejected and not batch.invalid


def test_non_utf8_value_is_rejected_alone() -> None:
    batch = parse_messages(_with_records(GOOD, b"\xff\xfe\x00binary", GOOD), InferenceRequest)
    assert len(batch.messages) == 2
    [bad] = batch.rejected
    assert bad.offset == 1 and bad.value == b"\xff\xfe\x00binary" and "undecodable" in bad.reason


def test_huge_and_non_object_values_are_rejected_not_fatal() -> None:
    huge = b'{"uuid": "' + b"x" * 2_000_000 + b'"'  # 2 MB, truncated JSON
    batch = parse_messages(_with_records(huge, b"[1, 2, 3]", b"null", GOOD), InferenceRequest)
    assert [m.seq for m in batch.messages] == [1]
    assert sorted(r.offset for r in batch.rejected) == [0, 1, 2]


def test_schema_violation_keeps_the_payload_for_an_answer() -> None:
    wrong = json.dumps({"uuid": "u", "seq": 2, "topk": 0, "blob": "b"}).encode()
    batch = parse_messages(_with_records(wrong), InferenceRequest)
    [(payload, record)] = batch.invalid
    assert payload["seq"] == 2 and "topk" in record.reason


def test_malformed_envelope_raises() -> None:
    event = copy.deepcopy(load_event("msk_infer"))
    del event["eventSourceArn"]
    with pytest.raises(ValidationError):
        parse_messages(event, InferenceRequest)
