"""What the store keeps: the schema, a request row, and the outcomes of applying a result."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from .contracts import Status

if TYPE_CHECKING:
    from databases.core import Connection

    from .sql import Driver

SCHEMA = {  # name -> statement: tables, then indexes
    "sessions": """CREATE TABLE IF NOT EXISTS sessions (
        uuid VARCHAR(36) NOT NULL PRIMARY KEY,
        created_at DOUBLE NOT NULL
    )""",
    "requests": """CREATE TABLE IF NOT EXISTS requests (
        uuid VARCHAR(36) NOT NULL,
        seq BIGINT NOT NULL,
        topk INTEGER NOT NULL,
        blob_key VARCHAR(512) NOT NULL,
        content_hash CHAR(64) NOT NULL,
        content_type VARCHAR(100) NOT NULL,
        status VARCHAR(16) NOT NULL,
        labels TEXT,
        scores TEXT,
        error TEXT,
        model VARCHAR(100),
        submitted_at DOUBLE NOT NULL,
        finished_at DOUBLE,
        published_at DOUBLE,
        attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (uuid, seq)
    )""",
    "requests_by_status": "CREATE INDEX IF NOT EXISTS requests_by_status ON requests (status, submitted_at)",
}
# Columns added after the first release: (name, definition), added to existing tables at start (``DatabaseStore``).
ADDED_COLUMNS = (("attempts", "INTEGER NOT NULL DEFAULT 0"),)


@dataclass(frozen=True)
class RequestRow:
    uuid: str
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


def row_from_record(m: dict[str, Any]) -> RequestRow:
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


async def create_tables(sql: Driver, db: Connection) -> None:
    """The schema, idempotent: what is missing of tables, index and columns added since a table was created
    (looked up first: MariaDB logs a warning for every ``IF NOT EXISTS`` that finds its object)."""
    present = await _names(
        sql,
        db,
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')",
        "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() UNION"
        " SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()",
    )
    for name, statement in SCHEMA.items():
        if name not in present:
            await sql.execute(db, statement)
    have = await _names(
        sql,
        db,
        "PRAGMA table_info(requests)",
        "SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME = 'requests'",
    )
    for name, ddl in ADDED_COLUMNS:
        if name in have:
            continue
        if not sql.sqlite:  # IF NOT EXISTS: another process may be adding it at the same moment
            await sql.execute(db, f"ALTER TABLE requests ADD COLUMN IF NOT EXISTS {name} {ddl}")
            continue
        try:
            await sql.execute(db, f"ALTER TABLE requests ADD COLUMN {name} {ddl}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise


async def _names(sql: Driver, db: Connection, sqlite_query: str, mariadb_query: str) -> set[str]:
    """The ``name`` column of the dialect's catalogue query."""
    return {str(r["name"]) for r in await sql.fetch_all(db, sqlite_query if sql.sqlite else mariadb_query)}


def missing_table(exc: BaseException) -> bool:
    """SQLite's "no such table", MariaDB's ER_NO_SUCH_TABLE (1146): the schema was dropped under us."""
    import asyncmy.errors

    if isinstance(exc, sqlite3.OperationalError):
        return "no such table" in str(exc)
    return isinstance(exc, asyncmy.errors.ProgrammingError) and bool(exc.args) and exc.args[0] == 1146
