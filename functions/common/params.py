"""Parsing of request parameters (form fields, query strings) into typed values or a clear 400."""

from __future__ import annotations

import re
import uuid as uuid_lib

from .contracts import MAX_SEQ, MAX_TOPK
from .errors import BadRequest


def parse_uuid(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("field 'uuid' is required")
    try:
        parsed = uuid_lib.UUID(value)
    except ValueError as exc:
        raise BadRequest("field 'uuid' is not a valid UUID") from exc
    return str(parsed)


# ASCII digits with at most one sign: ``str.isdigit`` also says yes to "²" and "①", which ``int`` refuses
# (a 500 once), and ``int`` itself accepts "1_000" and non-ASCII digits such as "١٢".
_INTEGER = re.compile(r"\s*[+-]?[0-9]{1,19}\s*", re.ASCII)


def parse_int(value: object, name: str, low: int, high: int | None = None) -> int:
    if value is None or value == "":
        raise BadRequest(f"field '{name}' is required")
    if not isinstance(value, str) or not _INTEGER.fullmatch(value):
        raise BadRequest(f"field '{name}' must be an integer")
    number = int(value)
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise BadRequest(f"field '{name}' must be {bound}, got {number}")
    return number


def parse_topk(value: object) -> int:
    return parse_int(value, "topk", 1, MAX_TOPK)


def parse_seq(value: object, name: str = "seq") -> int:
    return parse_int(value, name, 0, MAX_SEQ)
