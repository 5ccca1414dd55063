"""The store contract, run against both backends (SQLite and the real MariaDB) alike.

No broker, no settings: `make test-store-versions` runs this module on the lowest and highest SQLAlchemy admitted."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest
from databases import Database

from functions.common.contracts import InferenceResult
from functions.common.store import Applied, RequestRow, Store, UnknownSession, normalise_url, open_store
from functions.common.store.schema import TABLES
from tests.helpers import run_sql

SESSION = "6a1d2f38-4e8b-4b57-9a53-0c8f4f1d2e90"


@pytest.fixture
async def store(db_url: str):  # type: ignore[no-untyped-def]
    s = open_store(db_url)
    await s.init_schema()
    await run_sql(db_url, "DELETE FROM requests", "DELETE FROM sessions")
    await s.create_session(SESSION)
    yield s
    await s.close()


def _row(seq: int, digest: str = "a" * 64) -> RequestRow:
    return RequestRow(SESSION, seq, 3, f"{SESSION}/{seq}", digest, "image/png", submitted_at=1.0)


def _done(seq: int, label: str = "tabby") -> InferenceResult:
    return InferenceResult(uuid=SESSION, seq=seq, status="done", labels=[label], scores=[0.9], model="m")


def _failed(seq: int) -> InferenceResult:
    return InferenceResult(uuid=SESSION, seq=seq, status="failed", error="boom", model="m")


async def test_schema_creation_is_idempotent(store: Store) -> None:
    await store.init_schema()
    await store.init_schema()
    assert await store.session_exists(SESSION)
    assert not await store.session_exists("00000000-0000-4000-8000-000000000000")


async def test_add_request_is_insert_if_absent(store: Store) -> None:
    first, created = await store.add_request(_row(1))
    again, created_again = await store.add_request(_row(1, digest="b" * 64))
    assert created and not created_again
    assert again == first and again.content_hash == "a" * 64 and again.status == "queued"


async def test_results_apply_in_any_order_and_number(store: Store) -> None:
    for seq in range(20):
        await store.add_request(_row(seq))
    deliveries = [_done(s) for s in range(20)] * 2 + [_failed(s) for s in range(0, 20, 2)]
    random.Random(7).shuffle(deliveries)
    outcomes = [await store.apply_result(r) for r in deliveries]

    rows = await store.get_range(SESSION, 0, 19)
    assert [r.seq for r in rows] == list(range(20))  # exactly one row per (uuid, seq)
    assert all(r.status == "done" and r.labels == ("tabby",) for r in rows)
    # 20 first answers; a failure that came before its `done` is replaced by it
    order = [(r.seq, r.status) for r in deliveries]
    assert outcomes.count(Applied.APPLIED) == 20 + sum(
        1 for s in range(0, 20, 2) if order.index((s, "failed")) < order.index((s, "done"))
    )


async def test_first_done_wins_and_failed_never_overwrites_done(store: Store) -> None:
    await store.add_request(_row(1))
    assert await store.apply_result(_done(1, "tabby")) is Applied.APPLIED
    assert await store.apply_result(_done(1, "tiger")) is Applied.DUPLICATE
    assert await store.apply_result(_failed(1)) is Applied.DUPLICATE
    row = await store.get_request(SESSION, 1)
    assert row is not None and row.labels == ("tabby",) and row.error is None


async def test_result_for_unknown_request_is_reported_not_stored(store: Store) -> None:
    assert await store.apply_result(_done(99)) is Applied.UNKNOWN
    assert await store.get_request(SESSION, 99) is None


async def test_concurrent_duplicate_results_leave_one_row(store: Store) -> None:
    await store.add_request(_row(5))
    outcomes = await asyncio.gather(*(store.apply_result(_done(5)) for _ in range(10)))
    assert sorted(o.value for o in outcomes) == ["applied"] + ["duplicate"] * 9  # counted once, however they race
    assert [r.seq for r in await store.get_range(SESSION, 0, 10)] == [5]


async def test_range_and_counts(store: Store) -> None:
    for seq in (1, 3, 5, 7):
        await store.add_request(_row(seq))
    await store.apply_result(_done(3))
    await store.apply_result(_failed(5))
    assert [r.seq for r in await store.get_range(SESSION, 2, 6)] == [3, 5]
    assert await store.status_counts() == {"queued": 2, "done": 1, "failed": 1}
    finished = await store.get_request(SESSION, 3)
    assert finished is not None and finished.finished_at is not None
    assert finished.finished_at <= datetime.now(UTC).timestamp()


def test_short_urls_pick_the_async_drivers() -> None:
    assert normalise_url("mysql://root@db/x") == "mysql+asyncmy://root@db/x"
    assert normalise_url("sqlite:///a.db") == "sqlite+aiosqlite:///a.db"
    assert normalise_url("sqlite+aiosqlite:///a.db") == "sqlite+aiosqlite:///a.db"


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
async def test_store_reconnects_after_the_server_drops_its_connections(store: Store, db_url: str) -> None:
    await store.add_request(_row(1))
    database = db_url.rsplit("/", 1)[1]
    admin = Database(db_url.rsplit("/", 1)[0] + "/test")
    await admin.connect()
    try:
        ids = await admin.fetch_all("SELECT id FROM information_schema.processlist WHERE db = :db", {"db": database})
        assert ids, "the store should hold a connection"
        for record in ids:
            await admin.execute(f"KILL {int(record._mapping['id'])}")
    finally:
        await admin.disconnect()
    row = await store.get_request(SESSION, 1)  # dead pooled connections are replaced, not handed out
    assert row is not None and row.seq == 1
    assert await store.apply_result(_done(1)) is Applied.APPLIED


async def test_unreachable_database_fails_clearly() -> None:
    import asyncmy.errors

    store = open_store("mysql://root@127.0.0.1:1/none")
    with pytest.raises(asyncmy.errors.OperationalError, match="Can't connect"):
        await store.ping()


async def test_retrying_records_why_on_a_queued_row_and_never_touches_a_final_one(store: Store) -> None:
    for seq in (1, 2):
        await store.add_request(_row(seq))
    await store.apply_result(_done(2))
    retrying = [
        InferenceResult(uuid=SESSION, seq=seq, status="retrying", error="model unavailable: x") for seq in (1, 2)
    ]
    assert await store.apply_results(retrying) == [Applied.APPLIED, Applied.DUPLICATE]
    queued, done = await store.get_range(SESSION, 1, 2)
    assert (queued.status, queued.error, queued.labels) == ("queued", "model unavailable: x", ())
    assert (done.status, done.error, done.labels) == ("done", None, ("tabby",))
    assert await store.apply_result(_done(1)) is Applied.APPLIED  # a later success still lands
    row = await store.get_request(SESSION, 1)
    assert row is not None and row.status == "done"


async def test_a_publish_is_claimed_by_one_caller_per_period(store: Store) -> None:
    await store.add_request(_row(1))  # submitted (and claimed by its creator) at t=1
    assert not await store.claim_publish(SESSION, 1, at=30.0, stale_before=0.5)  # the creator's claim holds
    claims = await asyncio.gather(*(store.claim_publish(SESSION, 1, at=100.0, stale_before=50.0) for _ in range(10)))
    assert claims.count(True) == 1  # period over: exactly one replay publishes
    await store.release_publish(SESSION, 1)  # its publish failed
    assert await store.claim_publish(SESSION, 1, at=101.0, stale_before=51.0)
    await store.apply_result(_done(1))
    assert not await store.claim_publish(SESSION, 1, at=500.0, stale_before=400.0)  # done: nothing to publish


async def test_a_request_of_an_unregistered_session_is_refused(store: Store) -> None:
    with pytest.raises(UnknownSession):
        await store.add_request(RequestRow("00000000-0000-4000-8000-000000000000", 1, 3, "k", "a" * 64, "image/png"))


async def test_dropped_tables_are_recreated_and_the_operation_retried(store: Store, db_url: str) -> None:
    await store.add_request(_row(1))
    await run_sql(db_url, "DROP TABLE requests", "DROP TABLE sessions")
    assert not await store.session_exists(SESSION)  # answered on the re-created, empty tables
    await store.create_session(SESSION)
    assert (await store.add_request(_row(1)))[1]


async def test_a_requests_table_from_before_a_column_was_added_gains_it(db_url: str) -> None:
    await run_sql(db_url, "DROP TABLE IF EXISTS requests")
    old = TABLES["requests"].replace("        attempts INTEGER NOT NULL DEFAULT 0,\n", "")
    assert "attempts" not in old
    await run_sql(db_url, old)
    store = open_store(db_url)
    try:
        await store.init_schema()
        await store.create_session(SESSION)
        await store.add_request(_row(1))
        await store.mark_published([(SESSION, 1)], at=5.0)
        row = await store.get_request(SESSION, 1)
        assert row is not None and row.attempts == 1
        await store.init_schema()  # idempotent once the column exists
    finally:
        await store.close()


def test_an_unknown_database_scheme_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'postgresql'.*sqlite:///path.*mysql://"):
        open_store("postgresql://root@db/x")
