"""What the store keeps and answers, independent of the database: a request row and what applying a result did."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from functions.common.contracts import Status


@dataclass(frozen=True)
class RequestRow:
    uuid: str  # the session's id, as on the wire and in the database
    seq: int
    topk: int
    blob_key: str
    content_hash: str
    content_type: str
    status: Status = "queued"
    labels: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    error: str | None = None
    model: str | None = None
    submitted_at: float = 0.0
    finished_at: float | None = None
    attempts: int = 0  # times the sweeper published it again


class UnknownSession(LookupError):
    """A request names a session that was never registered."""


class Applied(Enum):
    """What applying one result did."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the row already holds a final answer at least as good
    UNKNOWN = "unknown"  # no such request (unknown session or seq)


def row_from_columns(m: dict[str, Any]) -> RequestRow:
    """A ``requests`` row as the driver returned it (column name → value)."""
    return RequestRow(
        uuid=m["uuid"],
        seq=int(m["seq"]),
        topk=int(m["topk"]),
        blob_key=m["blob_key"],
        content_hash=m["content_hash"].strip(),
        content_type=m["content_type"],
        status=m["status"],
        labels=tuple(json.loads(m["labels"])) if m["labels"] else (),
        scores=tuple(json.loads(m["scores"])) if m["scores"] else (),
        error=m["error"],
        model=m["model"],
        submitted_at=float(m["submitted_at"]),
        finished_at=None if m["finished_at"] is None else float(m["finished_at"]),
        attempts=int(m.get("attempts") or 0),
    )
