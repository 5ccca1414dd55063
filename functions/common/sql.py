"""Statements run on the driver connection (aiosqlite or asyncmy) that a ``databases`` connection wraps.

``databases`` turns every string query into a SQLAlchemy ``text()`` clause and compiles it on each call.
On the upload path that compile cost four to five times the statement itself (measured here: 0.54 ms CPU
per request insert through ``Connection.execute`` against 0.11 ms on the driver, SQLite), and it hides the
driver's count of changed rows, which then needs a second statement. ``databases`` still owns connecting,
pooling, reconnecting and transactions; only the statements go straight to the driver.

The SQL uses ``:name`` parameters: sqlite3 takes them as they are, and they are rewritten once per statement
to asyncmy's ``%(name)s``. The rewrite does not parse SQL: a ``:word`` inside a string literal would be
rewritten too, so values go in parameters, never in literals that contain a colon.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from databases.core import Connection

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

Values = Mapping[str, Any]


@lru_cache(maxsize=128)
def pyformat(sql: str) -> str:
    """``:name`` → ``%(name)s``; a literal ``%`` would need doubling, so statements must not contain one."""
    if "%" in sql:
        raise ValueError(f"statement contains '%': {sql!r}")
    return _NAMED.sub(r"%(\1)s", sql)


class Driver:
    """The dialect's way to run one statement on a connection acquired from ``databases``."""

    def __init__(self, sqlite: bool) -> None:
        self.sqlite = sqlite

    async def execute(self, db: Connection, sql: str, values: Values | None = None) -> int:
        """Run one statement; returns the number of rows it changed (inserted, updated, deleted)."""
        raw = db.raw_connection
        if self.sqlite:
            async with raw.execute(sql, dict(values or {})) as cursor:
                return int(cursor.rowcount)
        async with raw.cursor() as cursor:
            return int(await cursor.execute(pyformat(sql), dict(values or {})))

    async def fetch_all(self, db: Connection, sql: str, values: Values | None = None) -> list[dict[str, Any]]:
        """The rows of one query, each as column name → value."""
        raw = db.raw_connection
        if self.sqlite:
            async with raw.execute(sql, dict(values or {})) as cursor:
                rows = await cursor.fetchall()
                names = [column[0] for column in cursor.description]
        else:
            async with raw.cursor() as cursor:
                await cursor.execute(pyformat(sql), dict(values or {}))
                rows = await cursor.fetchall()
                names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def fetch_one(self, db: Connection, sql: str, values: Values | None = None) -> dict[str, Any] | None:
        rows = await self.fetch_all(db, sql, values)
        return rows[0] if rows else None
