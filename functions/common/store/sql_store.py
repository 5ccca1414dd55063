"""Every statement of the store, once, in SQL both backends run; the backend (``sqlite.py``, ``mariadb.py``) owns
the connections and what its dialect spells differently."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from functions.common.contracts import InferenceResult

from .rows import Applied, RequestRow, UnknownSession, row_from_columns

if TYPE_CHECKING:
    from databases.core import Connection

    from .backend import Backend


class SQLStore:
    """The ``Store`` on a SQL backend. Each operation runs its statements on one connection (``Backend.run``)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def init_schema(self) -> None:
        await self.backend.run(self.backend.create_tables)

    async def ping(self) -> None:
        """The database answers and holds the tables (re-created if they were dropped)."""
        await self.backend.run(lambda db: self.backend.fetch_all(db, "SELECT 1 FROM sessions, requests WHERE 1 = 0"))

    async def close(self) -> None:
        await self.backend.close()

    async def create_session(self, uuid: str) -> None:
        await self.backend.run(
            lambda db: self.backend.execute(
                db,
                f"{self.backend.insert_ignore} INTO sessions (uuid, created_at) VALUES (:uuid, :now)",
                {"uuid": uuid, "now": time.time()},
            )
        )

    async def session_exists(self, uuid: str) -> bool:
        found = await self.backend.run(
            lambda db: self.backend.fetch_one(db, "SELECT 1 AS found FROM sessions WHERE uuid = :uuid", {"uuid": uuid})
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
            inserted = await self.backend.execute(
                db,
                f"{self.backend.insert_ignore} INTO requests (uuid, seq, topk, blob_key, content_hash, content_type,"
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

        return await self.backend.run(insert)

    async def apply_result(self, result: InferenceResult) -> Applied:
        return (await self.apply_results([result]))[0]

    async def apply_results(self, results: Sequence[InferenceResult]) -> list[Applied]:
        """Idempotent upserts keyed by (uuid, seq): first final answer wins, except ``done`` replaces ``failed``."""

        async def apply_all(db: Connection) -> list[Applied]:
            return [await self._apply(db, result) for result in results]

        return await self.backend.run(apply_all)

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
        changed = await self.backend.execute(db, statement, values)
        if changed == 1:
            return Applied.APPLIED
        current = await self.backend.fetch_one(db, "SELECT status FROM requests WHERE uuid = :uuid AND seq = :seq", key)
        return Applied.UNKNOWN if current is None else Applied.DUPLICATE

    async def get_request(self, uuid: str, seq: int) -> RequestRow | None:
        return await self.backend.run(lambda db: self._select_request(db, uuid, seq))

    async def get_range(self, uuid: str, seq_start: int, seq_end: int, limit: int | None = None) -> list[RequestRow]:
        """The stored rows of the range in seq order; at most ``limit`` of them."""
        query = "SELECT * FROM requests WHERE uuid = :uuid AND seq BETWEEN :lo AND :hi ORDER BY seq"
        values: dict[str, object] = {"uuid": uuid, "lo": seq_start, "hi": seq_end}
        if limit is not None:
            query, values["limit"] = query + " LIMIT :limit", limit
        records = await self.backend.run(lambda db: self.backend.fetch_all(db, query, values))
        return [row_from_columns(r) for r in records]

    async def status_counts(self) -> dict[str, int]:
        records = await self.backend.run(
            lambda db: self.backend.fetch_all(db, "SELECT status, COUNT(*) AS n FROM requests GROUP BY status")
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
        records = await self.backend.run(lambda db: self.backend.fetch_all(db, query, values))
        return [row_from_columns(r) for r in records]

    async def queued_since(self, before: float) -> tuple[int, float | None]:
        """How many requests are still queued that were submitted before ``before``, and the oldest's time."""
        record = await self.backend.run(
            lambda db: self.backend.fetch_one(
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
                await self.backend.execute(
                    db,
                    "UPDATE requests SET published_at = :at, attempts = attempts + 1 WHERE uuid = :uuid AND seq = :seq",
                    {"at": at, "uuid": uuid, "seq": seq},
                )

        await self.backend.run(mark)

    async def claim_publish(self, uuid: str, seq: int, at: float, stale_before: float) -> bool:
        """Whether this caller may publish a queued request: true for one caller at a time, when no publish was
        claimed since ``stale_before`` (or the last one was released)."""
        changed = await self.backend.run(
            lambda db: self.backend.execute(
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
        await self.backend.run(
            lambda db: self.backend.execute(
                db,
                "UPDATE requests SET published_at = NULL WHERE uuid = :uuid AND seq = :seq",
                {"uuid": uuid, "seq": seq},
            )
        )

    async def _select_request(self, db: Connection, uuid: str, seq: int) -> RequestRow | None:
        record = await self.backend.fetch_one(
            db, "SELECT * FROM requests WHERE uuid = :uuid AND seq = :seq", {"uuid": uuid, "seq": seq}
        )
        return None if record is None else row_from_columns(record)
