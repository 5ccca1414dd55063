"""What a SQL backend gives the store: connections from ``databases``, statements on the driver, the schema.

``databases`` owns connecting and pooling, used through its public API (``Database``, ``connection()``,
``Connection.raw_connection``). Statements go straight to the driver connection it hands out: ``databases`` would
compile each string query with SQLAlchemy on every call (0.54 ms CPU per upload insert against 0.11 ms on the
driver, SQLite, measured here) and it hides the driver's count of changed rows. A backend says how to run a
statement on its driver and what its dialect spells differently; nothing else branches on the database.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .schema import ADDED_COLUMNS, TABLES

if TYPE_CHECKING:  # ``databases`` pulls in SQLAlchemy (~0.2 s): imported when the first store is opened
    from databases import Database
    from databases.core import Connection

log = logging.getLogger(__name__)

T = TypeVar("T")
REREAD_INTERVAL_S = 10.0  # a secret that still holds refused credentials is not read on every request
Values = Mapping[str, Any]


class Backend(ABC):
    insert_ignore: ClassVar[str]  # the dialect's insert-if-absent keywords

    def __init__(self, url: str, reread: Callable[[], str] | None = None) -> None:
        """``reread``: where the URL came from, asked again when the database refuses the credentials (a rotated
        secret); None when the URL cannot change."""
        self.url, self._reread, self._next_reread = url, reread, 0.0
        self._db = self._database()

    @abstractmethod
    def _database(self) -> Database:
        """The (not yet connected) ``databases`` pool for ``self.url``."""

    @abstractmethod
    async def _on_connect(self, db: Connection) -> None:
        """Once, when the pool first connects."""

    @abstractmethod
    async def execute(self, db: Connection, sql: str, values: Values | None = None) -> int:
        """Run one statement with ``:name`` parameters; the number of rows it changed."""

    @abstractmethod
    async def fetch_all(self, db: Connection, sql: str, values: Values | None = None) -> list[dict[str, Any]]:
        """The rows of one query with ``:name`` parameters, each as column name → value."""

    @abstractmethod
    async def _schema_names(self, db: Connection) -> set[str]:
        """The names of the tables and indexes that exist."""

    @abstractmethod
    async def _columns(self, db: Connection, table: str) -> set[str]: ...

    @abstractmethod
    async def _add_column(self, db: Connection, table: str, name: str, ddl: str) -> None:
        """Idempotent: another process may add the same column at the same moment."""

    @abstractmethod
    def _missing_table(self, exc: BaseException) -> bool:
        """Whether ``exc`` says a table does not exist (dropped behind our back)."""

    def _connection_lost(self, exc: BaseException) -> bool:
        """Whether an operation that raised ``exc`` may be retried on a newly acquired connection."""
        return False

    async def fetch_one(self, db: Connection, sql: str, values: Values | None = None) -> dict[str, Any] | None:
        rows = await self.fetch_all(db, sql, values)
        return rows[0] if rows else None

    def _auth_failed(self, exc: BaseException) -> bool:
        """Whether the database refused the credentials (asked only when a ``reread`` can give new ones)."""
        return False

    async def run(self, operation: Callable[[Connection], Awaitable[T]]) -> T:
        """``operation`` on one connection, retried as ``_retried`` says; when the database refuses the credentials
        and their source gives new ones (a rotated secret), once more on a pool opened with those."""
        failed_url = self.url
        try:
            return await self._retried(operation)
        except Exception as exc:
            if self._reread is None or not self._auth_failed(exc) or not await self._reopened(failed_url):
                raise
        return await self._retried(operation)

    async def _reopened(self, failed_url: str) -> bool:
        """A new pool when the URL's source now says something else; False when it says the same."""
        if self.url == failed_url:  # not yet replaced by a concurrent operation that failed the same way
            assert self._reread is not None
            if time.monotonic() < self._next_reread:
                return False
            url = self._reread()
            if url == failed_url:  # the secret still holds what the database refuses: ask again a while later
                self._next_reread = time.monotonic() + REREAD_INTERVAL_S
                return False
            log.warning("database refused the credentials; they were read again and the pool reopened")
            old, self.url = self._db, url
            self._db = self._database()
            if old.is_connected:
                await old.disconnect()
        return True

    async def _retried(self, operation: Callable[[Connection], Awaitable[T]]) -> T:
        """``operation`` on one connection. Retried once when its table was missing (re-created first) or its
        connection was lost: every operation of the store is idempotent, so the retry is safe."""
        try:
            return await self._on_connection(operation)
        except Exception as exc:
            if self._missing_table(exc):  # said loudly: someone dropped a table under a running service
                log.error("database table missing (%s); re-creating the schema", exc)
                await self._on_connection(self.create_tables)
            elif self._connection_lost(exc):
                # The pool drops dead connections when they are next acquired; other requests may still hold
                # connections of this pool, so it is retried, never torn down here.
                log.warning("database connection lost (%r); retrying once", exc)
            else:
                raise
            return await self._on_connection(operation)

    async def _on_connection(self, operation: Callable[[Connection], Awaitable[T]]) -> T:
        if not self._db.is_connected:
            await self._db.connect()
            # Deployed functions have no setup step: the tables are created (if missing) when a process first
            # connects, i.e. once per cold start; creating them is idempotent and concurrent-safe.
            async with self._db.connection() as connection:
                await self._on_connect(connection)
                await self.create_tables(connection)
        async with self._db.connection() as connection:
            return await operation(connection)

    async def create_tables(self, db: Connection) -> None:
        """What is missing of tables, index and columns added since a table was created (looked up first:
        MariaDB logs a warning for every ``IF NOT EXISTS`` that finds its object)."""
        present = await self._schema_names(db)
        for name, statement in TABLES.items():
            if name not in present:
                await self.execute(db, statement)
        have = await self._columns(db, "requests")
        for name, ddl in ADDED_COLUMNS:
            if name not in have:
                await self._add_column(db, "requests", name, ddl)

    async def close(self) -> None:
        if self._db.is_connected:
            await self._db.disconnect()
