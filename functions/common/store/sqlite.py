"""The SQLite backend (aiosqlite): the local simulation's default store, one file, kept connections, WAL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backend import Backend, Values

if TYPE_CHECKING:
    from databases import Database
    from databases.core import Connection


class SQLiteBackend(Backend):
    insert_ignore = "INSERT OR IGNORE"

    def __init__(self, url: str) -> None:
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(url)

    def _database(self) -> Database:
        from .kept_sqlite import kept_connections_database

        # sqlite3's ``timeout`` is its busy timeout, applied to every connection the pool opens.
        return kept_connections_database(self.url, timeout=10)

    async def _on_connect(self, db: Connection) -> None:
        await self.execute(db, "PRAGMA journal_mode=WAL")  # persistent: readers never block the writer

    # Every call to a cursor is a hop to the connection's thread and back (~40 us of CPU here). A cursor whose
    # statement has run to its end holds nothing (sqlite3 resets the statement), so it is left to the garbage
    # collector rather than closed with one more hop: a write costs one hop instead of two, a read two instead of
    # three.

    async def execute(self, db: Connection, sql: str, values: Values | None = None) -> int:
        cursor = await db.raw_connection.execute(sql, dict(values or {}))
        return int(cursor.rowcount)

    async def fetch_all(self, db: Connection, sql: str, values: Values | None = None) -> list[dict[str, Any]]:
        cursor = await db.raw_connection.execute(sql, dict(values or {}))
        rows = await cursor.fetchall()
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def _schema_names(self, db: Connection) -> set[str]:
        rows = await self.fetch_all(db, "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
        return {str(r["name"]) for r in rows}

    async def _columns(self, db: Connection, table: str) -> set[str]:
        return {str(r["name"]) for r in await self.fetch_all(db, f"PRAGMA table_info({table})")}

    async def _add_column(self, db: Connection, table: str, name: str, ddl: str) -> None:
        try:
            await self.execute(db, f"ALTER TABLE {table} ADD COLUMN {name} {ddl}")
        except sqlite3.OperationalError as exc:  # SQLite has no ADD COLUMN IF NOT EXISTS
            if "duplicate column" not in str(exc):
                raise

    def _missing_table(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)
