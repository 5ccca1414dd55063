"""The tables, in SQL both backends accept; each backend creates what is missing of them (``create_tables``)."""

from __future__ import annotations

TABLES = {  # name -> statement: tables, then indexes
    "sessions": """CREATE TABLE IF NOT EXISTS sessions (
        uuid VARCHAR(36) NOT NULL PRIMARY KEY,
        created_at DOUBLE NOT NULL
    )""",
    "requests": """CREATE TABLE IF NOT EXISTS requests (
        uuid VARCHAR(36) NOT NULL,
        seq BIGINT NOT NULL,
        topk INTEGER NOT NULL,
        blob_key VARCHAR(512) NOT NULL,
        content_hash CHAR(64) NOT NULL,
        content_type VARCHAR(100) NOT NULL,
        status VARCHAR(16) NOT NULL,
        labels TEXT,
        scores TEXT,
        error TEXT,
        model VARCHAR(100),
        submitted_at DOUBLE NOT NULL,
        finished_at DOUBLE,
        published_at DOUBLE,
        attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (uuid, seq)
    )""",
    "requests_by_status": "CREATE INDEX IF NOT EXISTS requests_by_status ON requests (status, submitted_at)",
}
# Columns of ``requests`` added after the first release: (name, definition), added to existing tables at start.
ADDED_COLUMNS = (("attempts", "INTEGER NOT NULL DEFAULT 0"),)
