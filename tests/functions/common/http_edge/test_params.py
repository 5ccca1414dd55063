"""Request inputs parsed by models: what is accepted, what is refused and how the refusal names the field."""

from __future__ import annotations

import pytest

from functions.common.contracts import MAX_SEQ, MAX_TOPK
from functions.common.errors import BadRequest
from functions.common.http_edge.params import BatchForm, ConfirmForm, ImageForm, ResultQuery, UploadUrlForm, parse

SESSION = "6a1f5f0e-8a5c-4b7e-9a59-3e1c2f0d9b11"
IMAGE = {"uuid": SESSION, "seq": "5", "topk": "3"}


def _refusal(model: type, source: dict[str, object]) -> str:
    with pytest.raises(BadRequest) as caught:
        parse(model, source)
    assert caught.value.status_code == 400
    return caught.value.message


def test_a_good_form_is_typed() -> None:
    form = parse(ImageForm, {**IMAGE, "extra": "ignored"})
    assert (form.uuid, form.seq, form.topk) == (SESSION, 5, 3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), (str(MAX_SEQ), MAX_SEQ), (" 7 ", 7), ("+7", 7), ("007", 7), (9, 9)],
)
def test_integers_in_every_accepted_spelling(value: object, expected: int) -> None:
    assert parse(ImageForm, {**IMAGE, "seq": value}).seq == expected


@pytest.mark.parametrize(
    "value", ["²", "①", "١٢", "1_000", "0x10", "1.0", "1.5", "--5", "+-5", "ten", "9" * 20, True, None, 1.0]
)
def test_anything_else_is_not_an_integer(value: object) -> None:
    source = {**IMAGE, "seq": value}
    expected = "field 'seq' is required" if value is None else "field 'seq' must be an integer"
    assert _refusal(ImageForm, source) == expected


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("seq", "-1", f"field 'seq' must be between 0 and {MAX_SEQ}, got -1"),
        ("seq", str(MAX_SEQ + 1), f"field 'seq' must be between 0 and {MAX_SEQ}, got {MAX_SEQ + 1}"),
        ("topk", "0", f"field 'topk' must be between 1 and {MAX_TOPK}, got 0"),
        ("topk", str(MAX_TOPK + 1), f"field 'topk' must be between 1 and {MAX_TOPK}, got {MAX_TOPK + 1}"),
        ("topk", "", "field 'topk' is required"),
        ("uuid", "", "field 'uuid' is required"),
        ("uuid", "not-a-uuid", "field 'uuid' is not a valid UUID"),
        ("uuid", 12, "field 'uuid' is not a valid UUID"),
        ("uuid", "3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a4\u0667", "field 'uuid' is not a valid UUID"),  # Arabic-Indic 7
    ],
)
def test_refusals_name_the_field_and_the_rule(field: str, value: object, message: str) -> None:
    assert _refusal(ImageForm, {**IMAGE, field: value}) == message


def test_a_missing_field_is_required_and_the_first_bad_field_is_named() -> None:
    assert _refusal(ImageForm, {"seq": "1", "topk": "1"}) == "field 'uuid' is required"
    assert _refusal(ImageForm, {"uuid": SESSION, "seq": "x", "topk": "0"}) == "field 'seq' must be an integer"


def test_uuids_are_normalised() -> None:
    assert parse(UploadUrlForm, {"uuid": SESSION.upper(), "seq": "1"}).uuid == SESSION


def test_each_route_has_its_own_fields() -> None:
    assert parse(BatchForm, {"uuid": SESSION, "seqStart": "4", "topk": "2"}).seqStart == 4
    query = parse(ResultQuery, {"uuid": SESSION, "seqStart": "1", "seqEnd": "9"})
    assert (query.seqStart, query.seqEnd) == (1, 9)
    assert parse(ConfirmForm, {**IMAGE, "key": "incoming/k"}).key == "incoming/k"
    assert _refusal(ConfirmForm, {**IMAGE, "key": ""}) == "field 'key' is required"
    assert _refusal(ConfirmForm, {**IMAGE, "key": 5}) == "field 'key' must be text"  # e.g. a file part
    assert _refusal(ResultQuery, {"uuid": SESSION, "seqStart": "1"}) == "field 'seqEnd' is required"
