"""Statements on the driver connection, against SQLite and the real MariaDB alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from databases import Database
from databases.core import Connection

from functions.common.db import normalise_url
from functions.common.sql import Driver, pyformat


def test_named_parameters_become_pyformat_once() -> None:
    sql = "SELECT a FROM t WHERE uuid = :uuid AND seq BETWEEN :lo AND :hi AND x::text = 'a:b'"
    assert pyformat(sql) == (
        "SELECT a FROM t WHERE uuid = %(uuid)s AND seq BETWEEN %(lo)s AND %(hi)s AND x::text = 'a:b'"
    )


def test_a_literal_percent_is_refused_rather_than_mangled() -> None:
    with pytest.raises(ValueError, match="'%'"):
        pyformat("SELECT * FROM t WHERE name LIKE 'a%' AND id = :id")


@pytest.fixture
async def connection(db_url: str) -> AsyncIterator[tuple[Driver, Connection, str]]:
    url = normalise_url(db_url)
    db = Database(url)
    await db.connect()
    table = f"sql_test_{uuid.uuid4().hex[:8]}"
    try:
        async with db.connection() as conn:
            driver = Driver(sqlite=url.startswith("sqlite"))
            await driver.execute(conn, f"CREATE TABLE {table} (k VARCHAR(10) PRIMARY KEY, n INTEGER, f DOUBLE)")
            yield driver, conn, table
            await driver.execute(conn, f"DROP TABLE {table}")
    finally:
        await db.disconnect()


async def test_execute_reports_the_rows_it_changed(connection: tuple[Driver, Connection, str]) -> None:
    driver, conn, table = connection
    ignore = "INSERT OR IGNORE" if driver.sqlite else "INSERT IGNORE"
    insert = f"{ignore} INTO {table} (k, n, f) VALUES (:k, :n, :f)"
    assert await driver.execute(conn, insert, {"k": "a", "n": 1, "f": 0.5}) == 1
    assert await driver.execute(conn, insert, {"k": "a", "n": 9, "f": 9.0}) == 0  # ignored: key taken
    assert await driver.execute(conn, insert, {"k": "b", "n": 2, "f": 1.5}) == 1
    assert await driver.execute(conn, f"UPDATE {table} SET n = n + 10 WHERE n < :limit", {"limit": 5}) == 2
    assert await driver.execute(conn, f"UPDATE {table} SET n = 0 WHERE k = :k", {"k": "zz"}) == 0


async def test_fetch_returns_rows_by_column_name(connection: tuple[Driver, Connection, str]) -> None:
    driver, conn, table = connection
    for k, n in (("a", 1), ("b", 2), ("c", 3)):
        await driver.execute(conn, f"INSERT INTO {table} (k, n, f) VALUES (:k, :n, :f)", {"k": k, "n": n, "f": n / 4})
    rows = await driver.fetch_all(conn, f"SELECT k, n, f FROM {table} WHERE n >= :lo ORDER BY k", {"lo": 2})
    assert rows == [{"k": "b", "n": 2, "f": 0.5}, {"k": "c", "n": 3, "f": 0.75}]
    assert await driver.fetch_one(conn, f"SELECT n FROM {table} WHERE k = :k", {"k": "c"}) == {"n": 3}
    assert await driver.fetch_one(conn, f"SELECT n FROM {table} WHERE k = :k", {"k": "nope"}) is None
