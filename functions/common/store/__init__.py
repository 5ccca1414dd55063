"""The result store: sessions and their requests, behind one protocol, on SQLite (local) or MariaDB (deployed).

``open_store(url)`` picks the backend from the URL, and ``per_loop.get()`` is this loop's store at the configured
URL; ``databases`` and the driver are imported then, not when this package is (an HTTP function's cold start does
not pay for SQLAlchemy until its first request needs the store).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from functions.common.contracts import InferenceResult
from functions.common.loops import PerLoop

from .rows import Applied, RequestRow, UnknownSession


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


def open_store(url: str, reread: Callable[[], str] | None = None) -> Store:
    """The store at ``url`` (not yet connected: the first operation connects and creates missing tables);
    ``reread`` gives the URL again when the database refuses its credentials (a rotated secret)."""
    from .sql_store import SQLStore

    full = normalise_url(url)
    scheme = full.split("://", 1)[0]
    if scheme == "sqlite+aiosqlite":
        from .sqlite import SQLiteBackend

        return SQLStore(SQLiteBackend(full))
    if scheme == "mysql+asyncmy":
        from .mariadb import MariaDBBackend

        return SQLStore(MariaDBBackend(full, None if reread is None else lambda: normalise_url(reread())))
    raise ValueError(
        f"unsupported DATABASE_URL scheme {scheme!r}: use sqlite:///path (SQLite) or mysql://user@host/db (MariaDB)"
    )


def dependency_errors() -> tuple[type[BaseException], ...]:
    """What the store raises when its database (or the secret naming it) cannot be reached."""
    import sqlite3

    import asyncmy.errors
    from botocore.exceptions import BotoCoreError

    return (
        sqlite3.OperationalError,
        asyncmy.errors.OperationalError,
        asyncmy.errors.InterfaceError,
        BotoCoreError,  # Secrets Manager unreachable (endpoint, timeouts, credentials): not the request
    )


# A URL read from a secret is read again when the database refuses it: the password was rotated.
per_loop: PerLoop[Store] = PerLoop(lambda: open_store(_configured_url(), reread=_configured_url))


def _configured_url() -> str:
    from .secrets import database_url

    return database_url()


__all__ = [
    "Applied",
    "RequestRow",
    "Store",
    "UnknownSession",
    "dependency_errors",
    "normalise_url",
    "open_store",
    "per_loop",
]
