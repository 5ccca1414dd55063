"""Wire contracts: Kafka messages and HTTP response bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TOPK = 1000
MAX_SEQ = 2**31 - 1  # the prototype's Java int
Status = Literal["queued", "done", "failed"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class InferenceRequest(_Message):
    """``inference-request``: a claim check pointing at the uploaded bytes."""

    uuid: str
    seq: int = Field(ge=0)
    topk: int = Field(ge=1, le=MAX_TOPK)
    blob: str
    content_type: str = "application/octet-stream"
    submitted_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return message_key(self.uuid, self.seq)


class InferenceResult(_Message):
    """``inference-result``: what infer decided for one request. ``retrying``: not classified this time for a reason
    that may pass (the model cannot be loaded); the request stays queued with ``error`` saying why, and the
    sweeper publishes it again (``MAX_ATTEMPTS``)."""

    uuid: str
    seq: int = Field(ge=0)
    status: Literal["done", "failed", "retrying"]
    labels: list[str] = Field(default_factory=list)
    scores: list[float] = Field(default_factory=list)
    error: str | None = None
    model: str | None = None
    finished_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return message_key(self.uuid, self.seq)


def message_key(uuid: str, seq: int) -> str:
    """Kafka key of a request and its result, ``<uuid>:<seq>``: retries of one request land in the same partition."""
    return f"{uuid}:{seq}"


def parse_message_key(key: bytes) -> tuple[str, int] | None:
    """The ``(uuid, seq)`` of a ``message_key`` as it travels (bytes); ``None`` for any other key."""
    uuid, _, seq = key.rpartition(b":")
    if not uuid or not seq.isdigit():  # bytes.isdigit: ASCII digits only
        return None
    return uuid.decode("utf-8", "replace"), int(seq)


# HTTP bodies ---------------------------------------------------------------


class RegisterResponse(BaseModel):
    uuid: str


class ImageAccepted(BaseModel):
    uuid: str
    seq: int
    status: Status = "queued"


class Classified(BaseModel):
    """``POST /classify``: the result when it came within ``wait`` (status ``done`` or ``failed``), else status
    ``queued`` and ``poll``, the ``GET /result`` URL that will hold it."""

    uuid: str
    seq: int
    status: Status
    predictions: list[str] = Field(default_factory=list)
    scores: list[float] = Field(default_factory=list)
    error: str | None = None
    model: str | None = None
    poll: str | None = None


class PresignedUpload(BaseModel):
    """Where to POST the image (multipart: every field of ``fields``, then ``file``), then ``POST /image/confirm``."""

    url: str
    fields: dict[str, str]
    key: str
    expiresIn: int
    maxBytes: int


class BatchAccepted(BaseModel):
    uuid: str
    items: list[ImageAccepted]


class ResultItem(BaseModel):
    seq: int
    status: Literal["done", "failed"]
    predictions: list[str]
    scores: list[float]
    error: str | None = None
    model: str | None = None


class ResultPage(BaseModel):
    """``items``: the finished seqs of the range (``done`` and ``failed``), as the prototype returned only stored
    results; ``pending``: the seqs still queued; ``nextSeq``: set when the page stopped early to stay within a
    Lambda response (ask again from there), else null."""

    items: list[ResultItem]
    pending: list[int] = Field(default_factory=list)
    nextSeq: int | None = None


class ErrorBody(BaseModel):
    error: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]
