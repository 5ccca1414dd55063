"""The kept SQLite connections behind ``DatabaseStore``: reused, synchronous=NORMAL, never handed over dirty."""

from __future__ import annotations

import asyncio
from pathlib import Path

from databases.core import DatabaseURL

from functions.common.db import DatabaseStore
from functions.common.sqlite_pool import MAX_IDLE, KeptSQLitePool


async def test_the_store_reuses_its_sqlite_connections(tmp_path: Path) -> None:
    store = DatabaseStore(f"sqlite:///{tmp_path / 'kept.db'}")
    try:
        await store.init_schema()
        database = await store._ready()
        connections = set()
        for _ in range(5):
            async with database.connection() as connection:
                raw = connection.raw_connection
                connections.add(id(raw))
                assert await connection.fetch_val("PRAGMA synchronous") == 1  # NORMAL
                assert await connection.fetch_val("PRAGMA journal_mode") == "wal"
        assert len(connections) == 1
        await store.create_session("s")
        assert await store.session_exists("s")
    finally:
        await store.close()


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


async def test_concurrent_operations_on_one_store(tmp_path: Path) -> None:
    store = DatabaseStore(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        await store.init_schema()
        await asyncio.gather(*(store.create_session(f"s{i}") for i in range(40)))
        assert all(await asyncio.gather(*(store.session_exists(f"s{i}") for i in range(40))))
    finally:
        await store.close()
