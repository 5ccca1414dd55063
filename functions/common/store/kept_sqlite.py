"""ADAPTER over ``databases`` internals: SQLite with kept connections, which ``databases`` cannot give.

The stock SQLite backend opens a connection (and an aiosqlite thread) per acquire and closes it on release, which
costs more CPU than the statements themselves. This module is the one place that relies on more than the public
API of ``databases`` (0.9) and aiosqlite; what it relies on, each checked by ``tests/functions/common/store/
test_kept_sqlite.py`` on the lowest and highest SQLAlchemy the project admits (``make test-store-versions``):
- ``Database.SUPPORTED_BACKENDS`` (a class attribute naming each scheme's backend class) to register the backend;
- ``databases.backends.sqlite.SQLiteBackend``: its ``_pool`` (what ``connection()`` acquires from),
  ``_database_url`` and ``_options``;
- ``SQLitePool``: ``acquire``/``release``/``_database``/``_options``;
- aiosqlite's ``Connection._thread`` (made a daemon: see ``acquire``).

Each connection runs ``PRAGMA synchronous=NORMAL``: in WAL mode a commit then no longer waits for an fsync
(the WAL is synced at checkpoints), the database cannot be corrupted by a crash, and a power loss may undo the
last commits. This is the local, single-machine backend; deployments use MariaDB.
"""

from __future__ import annotations

from typing import Any

import aiosqlite
from databases import Database
from databases.backends.sqlite import SQLiteBackend, SQLitePool
from databases.core import DatabaseURL

# Connections kept open: as many as requests in flight at once (``databases`` gives each task its own), else
# every burst opens and closes connections (seen: 80 opened over 320 uploads at concurrency 16 with 4 kept).
MAX_IDLE = 16


class KeptSQLitePool(SQLitePool):
    def __init__(self, url: DatabaseURL, **options: Any) -> None:
        super().__init__(url, **options)
        self._idle: list[aiosqlite.Connection] = []

    async def acquire(self) -> aiosqlite.Connection:
        if self._idle:
            return self._idle.pop()
        connection = aiosqlite.connect(database=self._database, isolation_level=None, **self._options)
        # A kept connection's thread must not hold the interpreter at exit (a Lambda-style process never closes
        # its resources); aiosqlite creates that thread non-daemon and offers no parameter for it.
        connection._thread.daemon = True
        await connection.__aenter__()
        await connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    async def release(self, connection: aiosqlite.Connection) -> None:
        if connection.in_transaction:  # never hand a half-done transaction to the next user
            await connection.rollback()
        if len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        else:
            await super().release(connection)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await super().release(connection)


class KeptSQLiteBackend(SQLiteBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **options)
        self._pool: KeptSQLitePool = KeptSQLitePool(self._database_url, **self._options)

    async def disconnect(self) -> None:
        await self._pool.close()
        await super().disconnect()


class _KeptConnectionsDatabase(Database):
    SUPPORTED_BACKENDS = {  # noqa: RUF012 - the extension point ``databases`` offers
        **Database.SUPPORTED_BACKENDS,
        "sqlite": f"{__name__}:KeptSQLiteBackend",
    }


def kept_connections_database(url: str, **options: Any) -> Database:
    """A ``databases.Database`` for a ``sqlite+aiosqlite://`` URL whose connections are kept open between uses."""
    return _KeptConnectionsDatabase(url, **options)
