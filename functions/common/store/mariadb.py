"""The MariaDB backend (asyncmy): the deployed store; a lost connection (restart, idle timeout) is retried once.

The statements use ``:name`` parameters; asyncmy takes ``%(name)s``, rewritten once per statement (cached). The
rewrite does not parse SQL: a ``:word`` inside a string literal would be rewritten too, so values go in
parameters, never in literals that contain a colon.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import asyncmy.errors

from .backend import Backend, Values

if TYPE_CHECKING:
    from databases import Database
    from databases.core import Connection

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
ER_NO_SUCH_TABLE = 1146
ER_ACCESS_DENIED = (1045, 1698)  # a wrong password; a user the server does not know


@lru_cache(maxsize=128)
def pyformat(sql: str) -> str:
    """``:name`` → ``%(name)s``; a literal ``%`` would need doubling, so statements must not contain one."""
    if "%" in sql:
        raise ValueError(f"statement contains '%': {sql!r}")
    return _NAMED.sub(r"%(\1)s", sql)


class MariaDBBackend(Backend):
    insert_ignore = "INSERT IGNORE"

    def _database(self) -> Database:
        from databases import Database

        return Database(self.url)

    async def _on_connect(self, db: Connection) -> None:
        """Nothing to set: the server's defaults hold."""

    async def execute(self, db: Connection, sql: str, values: Values | None = None) -> int:
        async with db.raw_connection.cursor() as cursor:
            return int(await cursor.execute(pyformat(sql), dict(values or {})))

    async def fetch_all(self, db: Connection, sql: str, values: Values | None = None) -> list[dict[str, Any]]:
        async with db.raw_connection.cursor() as cursor:
            await cursor.execute(pyformat(sql), dict(values or {}))
            rows = await cursor.fetchall()
            names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def _schema_names(self, db: Connection) -> set[str]:
        rows = await self.fetch_all(
            db,
            "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() UNION"
            " SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()",
        )
        return {str(r["name"]) for r in rows}

    async def _columns(self, db: Connection, table: str) -> set[str]:
        rows = await self.fetch_all(
            db,
            "SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME = :table",
            {"table": table},
        )
        return {str(r["name"]) for r in rows}

    async def _add_column(self, db: Connection, table: str, name: str, ddl: str) -> None:
        await self.execute(db, f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {ddl}")

    def _missing_table(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncmy.errors.ProgrammingError) and bool(exc.args) and exc.args[0] == ER_NO_SUCH_TABLE

    def _auth_failed(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncmy.errors.OperationalError) and bool(exc.args) and exc.args[0] in ER_ACCESS_DENIED

    def _connection_lost(self, exc: BaseException) -> bool:
        lost = isinstance(exc, asyncmy.errors.OperationalError | asyncmy.errors.InterfaceError | ConnectionError)
        return lost and not self._auth_failed(exc)  # a refusal is not a loss: the same credentials fail again
