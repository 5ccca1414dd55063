"""Request inputs (form fields, query strings) as pydantic models: the bounds they enforce are the bounds the OpenAPI
document shows, and every refusal is a 400 naming the field."""

from __future__ import annotations

import re
import uuid as uuid_lib
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from functions.common.contracts import MAX_SEQ, MAX_TOPK
from functions.common.errors import BadRequest

# ASCII digits with at most one sign: ``str.isdigit`` also says yes to "²" and "①", which ``int`` refuses
# (a 500 once), and ``int`` (and pydantic's lax mode) accept "1_000", "1.0" and non-ASCII digits such as "١٢".
_INTEGER = re.compile(r"\s*[+-]?[0-9]{1,19}\s*", re.ASCII)


def _refused(message: str) -> PydanticCustomError:
    """A refusal whose message ``_message`` puts after the field's name."""
    return PydanticCustomError("refused", message)


def _integer(value: object) -> object:
    if value is None or value == "":
        raise _refused("is required")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not _INTEGER.fullmatch(value):
        raise _refused("must be an integer")
    return int(value)


def _session(value: object) -> str:
    if value is None or value == "":
        raise _refused("is required")
    try:
        if not isinstance(value, str) or not value.isascii():  # UUID() reads non-ASCII digits: one session, two names
            raise ValueError(value)
        return str(uuid_lib.UUID(value))
    except ValueError:
        raise _refused("is not a valid UUID") from None


# The bounds come before the validator, so that they land in the JSON schema (minimum/maximum) and are checked on
# the integer the validator made.
Seq = Annotated[int, Ge(0), Le(MAX_SEQ), BeforeValidator(_integer)]
TopK = Annotated[int, Ge(1), Le(MAX_TOPK), BeforeValidator(_integer)]
# POST /images: at most BATCH_FILES files (MAX_BATCH_FILES' default), so the first seq leaves room for all of them
# below MAX_SEQ; declared here, the document says it and the server refuses only what the document refuses.
BATCH_FILES = 64
BatchSeqStart = Annotated[int, Ge(0), Le(MAX_SEQ - BATCH_FILES + 1), BeforeValidator(_integer)]
SessionId = Annotated[str, BeforeValidator(_session), WithJsonSchema({"type": "string", "format": "uuid"})]


class Inputs(BaseModel):
    """Fields every request of one route carries; unknown fields are ignored, as the prototype ignored them."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ImageForm(Inputs):
    """``POST /image`` (the file itself: ``payload``)."""

    uuid: SessionId = Field(description="the session POST /register answered")
    seq: Seq = Field(description="this image's number in the session")
    topk: TopK = Field(description="how many labels to return, best first")


MAX_CLASSIFY_WAIT_S = 25  # API Gateway ends an HTTP API request at 30 s; the function needs the rest


class ClassifyForm(Inputs):
    """``POST /classify`` (the file itself: ``payload``)."""

    topk: TopK = Field(default=5, description="how many labels to return, best first")
    wait: float = Field(
        default=10, ge=0, le=MAX_CLASSIFY_WAIT_S,
        description=f"seconds to wait for the result (at most {MAX_CLASSIFY_WAIT_S}); then 202 with where to poll",
    )  # fmt: skip


class BatchForm(Inputs):
    """``POST /images`` (the files: ``payload``, repeated)."""

    uuid: SessionId = Field(description="the session POST /register answered")
    seqStart: BatchSeqStart = Field(
        description=f"the first file's seq; the i-th file gets seqStart+i (at most {BATCH_FILES} files)"
    )
    topk: TopK = Field(description="how many labels to return, best first")


class UploadUrlForm(Inputs):
    """``POST /upload-url``."""

    uuid: SessionId = Field(description="the session POST /register answered")
    seq: Seq = Field(description="the image's number in the session")


class ConfirmForm(ImageForm):
    """``POST /image/confirm``."""

    key: str = Field(min_length=1, description="the key POST /upload-url answered")


class ResultQuery(Inputs):
    """``GET /result``."""

    uuid: SessionId = Field(description="the session")
    seqStart: Seq = Field(description="first seq")  # the wire names are the prototype's
    seqEnd: Seq = Field(description="last seq (inclusive), not below seqStart; a page holds at most MAX_RANGE seqs")


M = TypeVar("M", bound=Inputs)


def parse(model: type[M], source: Mapping[str, Any]) -> M:
    """The model from a form or a query string (the last value of a repeated field), or a 400 naming the field."""
    try:
        return model.model_validate({name: source.get(name) for name in model.model_fields if name in source})
    except ValidationError as exc:
        raise BadRequest(_message(model, exc.errors()[0])) from None


def _message(model: type[Inputs], error: Any) -> str:
    """``field '<name>' <what is wrong>``: the first error pydantic found (the fields in declaration order)."""
    name, kind = str(error["loc"][0]), error["type"]
    if kind in ("greater_than_equal", "less_than_equal"):
        metadata = model.model_fields[name].metadata
        low = next(m.ge for m in metadata if isinstance(m, Ge))
        high = next(m.le for m in metadata if isinstance(m, Le))
        return f"field '{name}' must be between {low} and {high}, got {error['input']}"
    what = {"missing": "is required", "string_too_short": "is required", "string_type": "must be text"}
    return f"field '{name}' {what.get(kind, error['msg'])}"
