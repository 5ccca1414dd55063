"""The adapter over ``databases`` internals (kept SQLite connections): what it relies on still holds, and it works.

Run on the lowest and highest SQLAlchemy admitted (``make test-store-versions``), with the ``databases`` and
aiosqlite the project installs: an upgrade that moves one of the internals the adapter uses fails here first.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path

import aiosqlite
from databases import Database
from databases.backends.sqlite import SQLiteBackend, SQLitePool
from databases.core import DatabaseURL

from functions.common.store import open_store
from functions.common.store.kept_sqlite import MAX_IDLE, KeptSQLitePool, kept_connections_database


def test_the_internals_the_adapter_relies_on_are_there(tmp_path: Path) -> None:
    url = DatabaseURL(f"sqlite+aiosqlite:///{tmp_path / 'i.db'}")
    assert Database.SUPPORTED_BACKENDS["sqlite"].endswith(":SQLiteBackend")
    backend = SQLiteBackend(url, timeout=10)
    assert isinstance(backend._pool, SQLitePool) and backend._options == {"timeout": 10}
    assert backend._database_url == url
    assert "self._pool" in inspect.getsource(SQLiteBackend.connection)  # connection() acquires from _pool
    pool = SQLitePool(url, timeout=10)
    assert pool._database == str(tmp_path / "i.db") and pool._options == {"timeout": 10}
    connection = aiosqlite.connect(":memory:")
    assert isinstance(connection._thread, threading.Thread) and not connection._thread.is_alive()


async def test_kept_connections_are_reused_daemon_wal_and_synchronous_normal(tmp_path: Path) -> None:
    db = kept_connections_database(f"sqlite+aiosqlite:///{tmp_path / 'kept.db'}", timeout=10)
    await db.connect()
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        seen = set()
        for _ in range(5):
            async with db.connection() as connection:
                raw = connection.raw_connection
                seen.add(id(raw))
                assert raw._thread.daemon  # never holds the interpreter at exit
                assert await connection.fetch_val("PRAGMA synchronous") == 1  # NORMAL
                assert await connection.fetch_val("PRAGMA journal_mode") == "wal"
        assert len(seen) == 1
    finally:
        await db.disconnect()


async def test_pool_keeps_at_most_max_idle_and_rolls_back_leftovers(tmp_path: Path) -> None:
    pool = KeptSQLitePool(DatabaseURL(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"))
    held = [await pool.acquire() for _ in range(MAX_IDLE + 2)]  # more than kept: all distinct, all usable
    assert len({id(c) for c in held}) == MAX_IDLE + 2
    await held[0].execute("CREATE TABLE t (x INTEGER)")
    await held[0].execute("BEGIN")
    await held[0].execute("INSERT INTO t VALUES (1)")
    assert held[0].in_transaction
    for connection in held:
        await pool.release(connection)
    assert len(pool._idle) == MAX_IDLE
    again = await pool.acquire()
    assert not again.in_transaction
    async with again.execute("SELECT COUNT(*) FROM t") as cursor:
        assert (await cursor.fetchone()) == (0,)  # the abandoned insert was rolled back, not committed
    await pool.release(again)
    await pool.close()
    assert pool._idle == []
    for connection in held:  # closed: each connection's thread ends
        connection._thread.join(timeout=10)
        assert not connection._thread.is_alive()


async def test_concurrent_operations_on_one_sqlite_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'sub' / 'c.db'}")  # the folder is created
    try:
        await store.init_schema()
        await asyncio.gather(*(store.create_session(f"s{i}") for i in range(40)))
        assert all(await asyncio.gather(*(store.session_exists(f"s{i}") for i in range(40))))
    finally:
        await store.close()
