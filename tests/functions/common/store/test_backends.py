"""Each backend's statements on its driver, against SQLite and the real MariaDB alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from functions.common.store import normalise_url
from functions.common.store.backend import Backend
from functions.common.store.mariadb import MariaDBBackend, pyformat
from functions.common.store.sqlite import SQLiteBackend


def test_named_parameters_become_pyformat_once() -> None:
    sql = "SELECT a FROM t WHERE uuid = :uuid AND seq BETWEEN :lo AND :hi AND x::text = 'a:b'"
    assert pyformat(sql) == (
        "SELECT a FROM t WHERE uuid = %(uuid)s AND seq BETWEEN %(lo)s AND %(hi)s AND x::text = 'a:b'"
    )


def test_a_literal_percent_is_refused_rather_than_mangled() -> None:
    with pytest.raises(ValueError, match="'%'"):
        pyformat("SELECT * FROM t WHERE name LIKE 'a%' AND id = :id")


@pytest.fixture
async def backend(db_url: str) -> AsyncIterator[tuple[Backend, str]]:
    url = normalise_url(db_url)
    b: Backend = SQLiteBackend(url) if url.startswith("sqlite") else MariaDBBackend(url)
    table = f"sql_test_{uuid.uuid4().hex[:8]}"

    async def create(db: Any) -> None:
        await b.execute(db, f"CREATE TABLE {table} (k VARCHAR(10) PRIMARY KEY, n INTEGER, f DOUBLE)")

    await b.run(create)
    try:
        yield b, table
    finally:
        await b.run(lambda db: b.execute(db, f"DROP TABLE {table}"))
        await b.close()


async def test_execute_reports_the_rows_it_changed(backend: tuple[Backend, str]) -> None:
    b, table = backend
    insert = f"{b.insert_ignore} INTO {table} (k, n, f) VALUES (:k, :n, :f)"

    async def steps(db: Any) -> list[int]:
        return [
            await b.execute(db, insert, {"k": "a", "n": 1, "f": 0.5}),
            await b.execute(db, insert, {"k": "a", "n": 9, "f": 9.0}),  # ignored: key taken
            await b.execute(db, insert, {"k": "b", "n": 2, "f": 1.5}),
            await b.execute(db, f"UPDATE {table} SET n = n + 10 WHERE n < :limit", {"limit": 5}),
            await b.execute(db, f"UPDATE {table} SET n = 0 WHERE k = :k", {"k": "zz"}),
        ]

    assert await b.run(steps) == [1, 0, 1, 2, 0]


async def test_fetch_returns_rows_by_column_name(backend: tuple[Backend, str]) -> None:
    b, table = backend

    async def steps(db: Any) -> tuple[Any, ...]:
        for k, n in (("a", 1), ("b", 2), ("c", 3)):
            await b.execute(db, f"INSERT INTO {table} (k, n, f) VALUES (:k, :n, :f)", {"k": k, "n": n, "f": n / 4})
        return (
            await b.fetch_all(db, f"SELECT k, n, f FROM {table} WHERE n >= :lo ORDER BY k", {"lo": 2}),
            await b.fetch_one(db, f"SELECT n FROM {table} WHERE k = :k", {"k": "c"}),
            await b.fetch_one(db, f"SELECT n FROM {table} WHERE k = :k", {"k": "nope"}),
        )

    rows, one, none = await b.run(steps)
    assert rows == [{"k": "b", "n": 2, "f": 0.5}, {"k": "c", "n": 3, "f": 0.75}]
    assert one == {"n": 3} and none is None


async def test_an_error_that_is_neither_a_missing_table_nor_a_lost_connection_is_not_retried(
    backend: tuple[Backend, str],
) -> None:
    b, table = backend
    calls = 0

    async def failing(db: Any) -> None:
        nonlocal calls
        calls += 1
        await b.execute(db, f"INSERT INTO {table} (k, n, f) VALUES (:k, :n, :f)", {"k": "a", "n": 1, "f": 1.0})
        await b.execute(db, f"INSERT INTO {table} (k, n, f) VALUES (:k, :n, :f)", {"k": "a", "n": 1, "f": 1.0})

    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await b.run(failing)
    assert calls == 1
