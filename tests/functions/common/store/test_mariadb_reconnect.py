"""A MariaDB connection lost under a running function (a failover, an idle timeout, a proxy restart) costs a retry,
not a request: the statement runs again on a fresh connection. The loss is real here: the test's own connection is
ended with ``KILL`` from a second connection, the server keeps running."""

from __future__ import annotations

import asyncio
import logging

import pytest

from functions.common.store import open_store
from functions.common.store.sql_store import SQLStore

SESSION = "5b0d9c8e-3f2a-4e1b-9c7d-1a2b3c4d5e6f"


async def _connection_id(store: SQLStore) -> int:
    backend = store.backend

    async def ask(db: object) -> int:
        row = await backend.fetch_one(db, "SELECT CONNECTION_ID() AS id")  # type: ignore[arg-type]
        assert row is not None
        return int(row["id"])

    return await backend.run(ask)  # type: ignore[arg-type]


async def test_a_connection_killed_during_a_statement_is_retried_once_on_a_fresh_one(
    mariadb_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(f"{mariadb_url}?min_size=1&max_size=1")
    admin = open_store(mariadb_url)
    assert isinstance(store, SQLStore) and isinstance(admin, SQLStore)
    attempts: list[int] = []

    async def slow_then_quick(db: object) -> int:
        """The statement: killed mid-way the first time; its retry answers on its own connection."""
        connection = await _id(store, db)
        attempts.append(connection)
        if len(attempts) == 1:
            await store.backend.execute(db, "SELECT SLEEP(5)")  # type: ignore[arg-type]
        return connection

    async def kill_the_sleeper() -> None:
        for _ in range(100):
            await asyncio.sleep(0.05)
            rows = await admin.backend.run(
                lambda db: admin.backend.fetch_all(  # type: ignore[arg-type]
                    db, "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE LEFT(INFO, 12) = 'SELECT SLEEP'"
                )
            )
            if rows:
                kill = f"KILL {rows[0]['id']}"
                await admin.backend.run(lambda db, sql=kill: admin.backend.execute(db, sql))  # type: ignore[misc]
                return
        raise AssertionError("the statement never started")

    try:
        await store.init_schema()
        with caplog.at_level(logging.WARNING, logger="functions.common.store.backend"):
            answered, _ = await asyncio.gather(store.backend.run(slow_then_quick), kill_the_sleeper())  # type: ignore[arg-type]
        assert len(attempts) == 2 and attempts[0] != attempts[1] and answered == attempts[1]
        assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["database connection lost"]
        await store.create_session(SESSION)  # and the store goes on
        assert await store.session_exists(SESSION)
    finally:
        await store.close()
        await admin.close()


async def _id(store: SQLStore, db: object) -> int:
    row = await store.backend.fetch_one(db, "SELECT CONNECTION_ID() AS id")  # type: ignore[arg-type]
    assert row is not None
    return int(row["id"])


async def test_a_connection_killed_while_idle_is_replaced_by_the_pool(mariadb_url: str) -> None:
    store = open_store(f"{mariadb_url}?min_size=1&max_size=1")  # one pooled connection: the one that dies
    admin = open_store(mariadb_url)
    assert isinstance(store, SQLStore) and isinstance(admin, SQLStore)
    try:
        await store.init_schema()
        await store.create_session(SESSION)
        victim = await _connection_id(store)

        async def kill(db: object) -> int:
            return await admin.backend.execute(db, f"KILL {victim}")  # type: ignore[arg-type]

        await admin.backend.run(kill)  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert await store.session_exists(SESSION)
        assert await _connection_id(store) != victim
    finally:
        await store.close()
        await admin.close()
