"""What becomes of each record of a Kafka event: a message, a failed answer or a dead letter with its headers."""

from __future__ import annotations

import base64
import copy
import json

from functions.common.contracts import InferenceRequest, InferenceResult
from functions.common.kafka_edge.events import parse_messages
from functions.common.kafka_edge.outcomes import dead_letter_headers, dead_letter_messages, sort_records
from tests.helpers import load_event


def _event(*values: bytes, key: bytes | None = b"u:1") -> dict[str, object]:
    event = copy.deepcopy(load_event("selfmanaged_infer"))
    template = event["records"]["inference-request-0"][0]
    encoded_key = None if key is None else base64.b64encode(key).decode()
    event["records"] = {
        "inference-request-0": [
            {**template, "offset": i, "key": encoded_key, "value": base64.b64encode(v).decode()}
            for i, v in enumerate(values)
        ]
    }
    return event


def _json(**fields: object) -> bytes:
    return json.dumps(fields).encode()


GOOD = _json(uuid="u", seq=1, topk=3, blob="u/1.jpg")
TOO_MANY = _json(uuid="u", seq=2, topk=5000, blob="u/2.jpg")  # names whom it is for, breaks the schema
NOBODY = _json(topk=3, blob="x")  # no uuid, no seq
BAD_SEQ = _json(uuid="u", seq="two", topk=3, blob="x")


def test_each_request_record_becomes_exactly_one_outcome() -> None:
    batch = parse_messages(_event(GOOD, TOO_MANY, NOBODY, BAD_SEQ, b"not json", b"\xff\xfe"), InferenceRequest)
    records = sort_records(batch, answer_invalid=True)
    assert [m.seq for m in records.messages] == [1]
    [answer] = records.answered
    assert (answer.uuid, answer.seq, answer.status) == ("u", 2, "failed")
    assert answer.error is not None and "topk" in answer.error
    assert sorted(r.offset for r in records.dead_letters) == [2, 3, 4, 5]
    assert len(records.messages) + len(records.answered) + len(records.dead_letters) == 6


def test_a_malformed_result_is_no_answer_and_goes_to_the_dead_letters() -> None:
    wrong = _json(uuid="u", seq=1, status="finished")  # not a status
    good = InferenceResult(uuid="u", seq=2, status="done", labels=["a"], scores=[0.5]).model_dump_json().encode()
    records = sort_records(parse_messages(_event(wrong, good), InferenceResult), answer_invalid=False)
    assert [m.seq for m in records.messages] == [2]
    assert records.answered == []
    [dead] = records.dead_letters
    assert dead.offset == 0 and dead.value == wrong and "status" in dead.reason


def test_dead_letters_keep_the_original_bytes_and_key_and_say_why_who_and_where() -> None:
    huge = b'{"uuid": "' + b"x" * 2_000_000 + b'"'  # 2 MB, truncated JSON
    records = sort_records(parse_messages(_event(huge, NOBODY), InferenceRequest), answer_invalid=True)
    messages = dead_letter_messages(records.dead_letters, "infer")
    assert [value for _, value, _ in messages] == [huge, NOBODY]
    assert all(key == "u:1" for key, _, _ in messages)
    headers = [dict(h) for _, _, h in messages]
    assert [h["source"] for h in headers] == [b"inference-request-0@0", b"inference-request-0@1"]
    assert all(h["function"] == b"infer" for h in headers)
    assert headers[0]["error"].startswith(b"value is not JSON") and b"uuid" in headers[1]["error"]


def test_the_headers_are_the_same_for_every_writer() -> None:
    assert dead_letter_headers("x" * 5000, "collect", "t-0@7") == [
        ("error", b"x" * 1000),
        ("function", b"collect"),
        ("source", b"t-0@7"),
    ]
