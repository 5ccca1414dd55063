"""Result store on ``databases``: one schema, two real backends (SQLite via aiosqlite, MariaDB via asyncmy)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from .contracts import InferenceResult
from .records import Applied, RequestRow, UnknownSession, create_tables, missing_table, row_from_record
from .sql import Driver

if TYPE_CHECKING:  # ``databases`` pulls in SQLAlchemy (~0.2 s): imported when the first store is created
    from databases import Database
    from databases.core import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")


class Store(Protocol):
    async def init_schema(self) -> None: ...
    async def ping(self) -> None: ...
    async def create_session(self, uuid: str) -> None: ...
    async def session_exists(self, uuid: str) -> bool: ...
    async def add_request(self, row: RequestRow) -> tuple[RequestRow, bool]: ...
    async def apply_result(self, result: InferenceResult) -> Applied: ...
    async def apply_results(self, results: Sequence[InferenceResult]) -> list[Applied]: ...
    async def get_range(
        self, uuid: str, seq_start: int, seq_end: int, limit: int | None = None
    ) -> list[RequestRow]: ...
    async def get_request(self, uuid: str, seq: int) -> RequestRow | None: ...
    async def status_counts(self) -> dict[str, int]: ...
    async def stale_requests(self, cutoffs: Sequence[float], limit: int) -> list[RequestRow]: ...
    async def mark_published(self, keys: Sequence[tuple[str, int]], at: float) -> None: ...
    async def queued_since(self, before: float) -> tuple[int, float | None]: ...
    async def claim_publish(self, uuid: str, seq: int, at: float, stale_before: float) -> bool: ...
    async def release_publish(self, uuid: str, seq: int) -> None: ...
    async def close(self) -> None: ...


def normalise_url(url: str) -> str:
    """Accept the short forms users type (``mysql://``, ``sqlite:///``) and pick the async drivers."""
    for short, full in (
        ("mysql://", "mysql+asyncmy://"),
        ("mariadb://", "mysql+asyncmy://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(short):
            return full + url[len(short) :]
    return url


class DatabaseStore:
    """The one ``Store`` implementation; only the insert-if-absent statement differs by dialect.

    Each operation runs its statements on one connection (SQLite connections are kept open by
    ``sqlite_pool``), straight on the driver (``sql``: no per-call SQLAlchemy compile). On MariaDB an
    operation that fails because its connection was lost (server restarted, idle timeout) is retried once
    with a newly acquired connection; every operation here is idempotent, so the retry is safe.
    """

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = self._database()
        self._sql = Driver(sqlite=self.is_sqlite)
        self._insert_ignore = "INSERT OR IGNORE" if self.is_sqlite else "INSERT IGNORE"

    def _database(self) -> Database:
        from databases import Database

        class _Database(Database):
            SUPPORTED_BACKENDS = {  # noqa: RUF012 - the extension point ``databases`` offers
                **Database.SUPPORTED_BACKENDS,
                "sqlite": "functions.common.sqlite_pool:KeptSQLiteBackend",
            }

        # sqlite3's ``timeout`` is its busy timeout, applied to every connection the backend opens.
        return _Database(self.url, timeout=10) if self.is_sqlite else _Database(self.url)

    async def _ready(self) -> Database:
        if not self._db.is_connected:
            await self._db.connect()
            if self.is_sqlite:
                await self._db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
            # Deployed functions have no setup step: the tables are created (if missing) when a process first
            # connects, i.e. once per cold start; CREATE TABLE IF NOT EXISTS is idempotent and concurrent-safe.
            async with self._db.connection() as connection:
                await self._create_tables(connection)
        return self._db

    async def _io(self, operation: Callable[[Connection], Awaitable[T]]) -> T:
        try:
            return await self._on_connection(operation)
        except Exception as exc:
            if missing_table(exc):  # dropped behind our back: said loudly, re-created, the operation retried
                log.error("database table missing (%s); re-creating the schema", exc)
                await self._on_connection(self._create_tables)
            elif self.is_sqlite or not isinstance(exc, _connection_errors()):
                raise
            else:
                # The pool drops dead connections when they are next acquired; other requests may still hold
                # connections of this pool, so it is retried, never torn down here.
                log.warning("database connection lost (%r); retrying once", exc)
            return await self._on_connection(operation)

    async def _on_connection(self, operation: Callable[[Connection], Awaitable[T]]) -> T:
        async with (await self._ready()).connection() as connection:
            return await operation(connection)

    async def _create_tables(self, db: Connection) -> None:
        await create_tables(self._sql, db)

    async def init_schema(self) -> None:
        await self._io(self._create_tables)

    async def ping(self) -> None:
        """The database answers and holds the tables (re-created if they were dropped)."""
        await self._io(lambda db: self._sql.fetch_all(db, "SELECT 1 FROM sessions, requests WHERE 1 = 0"))

    async def close(self) -> None:
        if self._db.is_connected:
            await self._db.disconnect()

    async def create_session(self, uuid: str) -> None:
        await self._io(
            lambda db: self._sql.execute(
                db,
                f"{self._insert_ignore} INTO sessions (uuid, created_at) VALUES (:uuid, :now)",
                {"uuid": uuid, "now": time.time()},
            )
        )

    async def session_exists(self, uuid: str) -> bool:
        found = await self._io(
            lambda db: self._sql.fetch_one(db, "SELECT 1 AS found FROM sessions WHERE uuid = :uuid", {"uuid": uuid})
        )
        return found is not None

    async def add_request(self, row: RequestRow) -> tuple[RequestRow, bool]:
        """Insert unless (uuid, seq) exists; returns the stored row and whether this call created it.

        Raises ``UnknownSession`` when the session was never registered. A concurrent twin may win the
        insert; callers compare content hashes either way.
        """
        submitted_at = row.submitted_at or time.time()
        values = {
            "uuid": row.uuid,
            "seq": row.seq,
            "topk": row.topk,
            "blob_key": row.blob_key,
            "content_hash": row.content_hash,
            "content_type": row.content_type,
            "status": "queued",
            "submitted_at": submitted_at,
        }  # published_at = submitted_at: the creator holds the publish claim (``claim_publish``)

        async def insert(db: Connection) -> tuple[RequestRow, bool]:
            # One statement on the common path: inserted only if the session exists and (uuid, seq) is free.
            inserted = await self._sql.execute(
                db,
                f"{self._insert_ignore} INTO requests (uuid, seq, topk, blob_key, content_hash, content_type,"
                " status, submitted_at, published_at) SELECT :uuid, :seq, :topk, :blob_key, :content_hash,"
                " :content_type, :status, :submitted_at, :submitted_at FROM sessions WHERE uuid = :uuid",
                values,
            )
            if inserted == 1:
                return replace(row, status="queued", submitted_at=submitted_at), True
            stored = await self._select_request(db, row.uuid, row.seq)
            if stored is None:
                raise UnknownSession(row.uuid)
            return stored, False

        return await self._io(insert)

    async def apply_result(self, result: InferenceResult) -> Applied:
        return (await self.apply_results([result]))[0]

    async def apply_results(self, results: Sequence[InferenceResult]) -> list[Applied]:
        """Idempotent upserts keyed by (uuid, seq): first final answer wins, except ``done`` replaces ``failed``."""

        async def apply_all(db: Connection) -> list[Applied]:
            return [await self._apply(db, result) for result in results]

        return await self._io(apply_all)

    async def _apply(self, db: Connection, result: InferenceResult) -> Applied:
        key = {"uuid": result.uuid, "seq": result.seq}
        values = {
            **key,
            "status": result.status,
            "labels": json.dumps(result.labels),
            "scores": json.dumps(result.scores),
            "error": result.error,
            "model": result.model,
            "finished_at": result.finished_at.timestamp(),
        }
        # The rule lives in the statement's guard, so concurrent collectors cannot regress a row either.
        statement = (
            "UPDATE requests SET error = :error, model = :model WHERE uuid = :uuid AND seq = :seq AND status = 'queued'"
            if result.status == "retrying"  # why the attempt failed; the row stays queued
            else "UPDATE requests SET status = :status, labels = :labels, scores = :scores, error = :error,"
            " model = :model, finished_at = :finished_at WHERE uuid = :uuid AND seq = :seq"
            " AND (status = 'queued' OR (status = 'failed' AND :status = 'done'))"
        )
        changed = await self._sql.execute(db, statement, values)
        if changed == 1:
            return Applied.APPLIED
        current = await self._sql.fetch_one(db, "SELECT status FROM requests WHERE uuid = :uuid AND seq = :seq", key)
        return Applied.UNKNOWN if current is None else Applied.DUPLICATE

    async def get_request(self, uuid: str, seq: int) -> RequestRow | None:
        return await self._io(lambda db: self._select_request(db, uuid, seq))

    async def get_range(self, uuid: str, seq_start: int, seq_end: int, limit: int | None = None) -> list[RequestRow]:
        """The stored rows of the range in seq order; at most ``limit`` of them."""
        query = "SELECT * FROM requests WHERE uuid = :uuid AND seq BETWEEN :lo AND :hi ORDER BY seq"
        values: dict[str, object] = {"uuid": uuid, "lo": seq_start, "hi": seq_end}
        if limit is not None:
            query, values["limit"] = query + " LIMIT :limit", limit
        records = await self._io(lambda db: self._sql.fetch_all(db, query, values))
        return [row_from_record(r) for r in records]

    async def status_counts(self) -> dict[str, int]:
        records = await self._io(
            lambda db: self._sql.fetch_all(db, "SELECT status, COUNT(*) AS n FROM requests GROUP BY status")
        )
        return {str(r["status"]): int(r["n"]) for r in records}

    async def stale_requests(self, cutoffs: Sequence[float], limit: int) -> list[RequestRow]:
        """Queued requests last published (or submitted) before ``cutoffs[attempts]`` (the last cutoff for every
        later attempt): the sweeper's work list, each request on its own backoff."""
        last = len(cutoffs) - 1
        conditions = [f"attempts = {i} AND COALESCE(published_at, submitted_at) < :c{i}" for i in range(last)]
        conditions.append(f"attempts >= {last} AND COALESCE(published_at, submitted_at) < :c{last}")
        query = (
            f"SELECT * FROM requests WHERE status = 'queued' AND (({') OR ('.join(conditions)}))"
            " ORDER BY submitted_at LIMIT :limit"
        )
        values: dict[str, object] = {f"c{i}": cutoff for i, cutoff in enumerate(cutoffs)}
        values["limit"] = limit
        records = await self._io(lambda db: self._sql.fetch_all(db, query, values))
        return [row_from_record(r) for r in records]

    async def queued_since(self, before: float) -> tuple[int, float | None]:
        """How many requests are still queued that were submitted before ``before``, and the oldest's time."""
        record = await self._io(
            lambda db: self._sql.fetch_one(
                db,
                "SELECT COUNT(*) AS n, MIN(submitted_at) AS oldest FROM requests"
                " WHERE status = 'queued' AND submitted_at < :before",
                {"before": before},
            )
        )
        if record is None or not record["n"]:
            return 0, None
        return int(record["n"]), float(record["oldest"])

    async def mark_published(self, keys: Sequence[tuple[str, int]], at: float) -> None:
        """The sweeper published these again: one more attempt each."""

        async def mark(db: Connection) -> None:
            for uuid, seq in keys:
                await self._sql.execute(
                    db,
                    "UPDATE requests SET published_at = :at, attempts = attempts + 1 WHERE uuid = :uuid AND seq = :seq",
                    {"at": at, "uuid": uuid, "seq": seq},
                )

        await self._io(mark)

    async def claim_publish(self, uuid: str, seq: int, at: float, stale_before: float) -> bool:
        """Whether this caller may publish a queued request: true for one caller at a time, when no publish was
        claimed since ``stale_before`` (or the last one was released)."""
        changed = await self._io(
            lambda db: self._sql.execute(
                db,
                "UPDATE requests SET published_at = :at WHERE uuid = :uuid AND seq = :seq AND status = 'queued'"
                " AND (published_at IS NULL OR published_at < :stale_before)",
                {"at": at, "uuid": uuid, "seq": seq, "stale_before": stale_before},
            )
        )
        return changed == 1

    async def release_publish(self, uuid: str, seq: int) -> None:
        """A claimed publish failed: the next replay may publish at once (the sweeper's clock restarts from the
        submission)."""
        await self._io(
            lambda db: self._sql.execute(
                db,
                "UPDATE requests SET published_at = NULL WHERE uuid = :uuid AND seq = :seq",
                {"uuid": uuid, "seq": seq},
            )
        )

    async def _select_request(self, db: Connection, uuid: str, seq: int) -> RequestRow | None:
        record = await self._sql.fetch_one(
            db, "SELECT * FROM requests WHERE uuid = :uuid AND seq = :seq", {"uuid": uuid, "seq": seq}
        )
        return None if record is None else row_from_record(record)


def _connection_errors() -> tuple[type[BaseException], ...]:
    import asyncmy.errors

    return (asyncmy.errors.OperationalError, asyncmy.errors.InterfaceError, ConnectionError)


__all__ = ["Applied", "DatabaseStore", "RequestRow", "Store", "UnknownSession", "normalise_url"]
