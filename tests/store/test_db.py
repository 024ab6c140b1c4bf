"""The store's database layer (store/db/) on real SQLite and PostgreSQL: statements, values, errors,
transactions, and what a timeout leaves behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from binder_service.db_url import store_url
from binder_service.store.db import Database, DatabaseError, Json, Kind, Row, connect
from binder_service.store.db.sql import bind
from binder_service.store.db.values import sqlite_datetime

KINDS = {"at": Kind.DATETIME, "doc": Kind.JSON, "flag": Kind.BOOLEAN}
# A statement that runs for seconds on either database.
SLOW = {
    "sqlite": "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s) SELECT count(*) FROM s",
    "postgresql": "SELECT pg_sleep(30)",
}


@pytest.mark.parametrize(
    ("sql", "params", "mark", "text", "args"),
    [
        ("a = :a AND b = :b", {"a": 1, "b": 2}, "?", "a = ?1 AND b = ?2", [1, 2]),
        ("a = :a OR b = :a", {"a": 1}, "$", "a = $1 OR b = $1", [1]),  # one name, one parameter
        (
            "x IN (:ids) AND y = :y",
            {"ids": ["p", "q"], "y": 3},
            "$",
            "x IN ($1, $2) AND y = $3",
            ["p", "q", 3],
        ),
        ("x IN (:ids)", {"ids": ()}, "?", "x IN (NULL)", []),  # holds for no row
        ("s = ':no' AND \"c:x\" = :v", {"v": 1}, "?", "s = ':no' AND \"c:x\" = ?1", [1]),  # quoted text
        ("SELECT i::text FROM t WHERE t = :t", {"t": 0}, "$", "SELECT i::text FROM t WHERE t = $1", [0]),
        ("SELECT 1", {}, "?", "SELECT 1", []),
    ],
)
def test_named_parameters_become_numbered_ones(
    sql: str, params: dict[str, object], mark: str, text: str, args: list[object]
) -> None:
    assert bind(sql, params, mark) == (text, args)


def test_a_sqlite_datetime_is_stored_as_sqlalchemy_stored_it() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert sqlite_datetime(at) == "2026-01-02 03:04:05.000006"
    assert sqlite_datetime(at.astimezone(timezone(timedelta(hours=2)))) == "2026-01-02 03:04:05.000006"
    assert sqlite_datetime(at.replace(tzinfo=None)) == "2026-01-02 03:04:05.000006"  # naive: UTC


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    opened = connect(store_url(db_url), timeout=2.0, kinds=KINDS)
    async with opened.transaction() as conn:
        await conn.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, at TIMESTAMP WITH TIME ZONE, doc JSON, flag BOOLEAN)"
        )
    yield opened
    await opened.aclose()


async def test_values_round_trip(db: Database) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-5)))
    async with db.transaction() as conn:
        await conn.execute_many(
            "INSERT INTO t (id, at, doc, flag) VALUES (:id, :at, :doc, :flag)",
            [
                {"id": 1, "at": at, "doc": Json({"a": ["é", 1]}), "flag": True},
                {"id": 2, "at": None, "doc": Json([]), "flag": False},
            ],
        )
    async with db.read() as conn:
        rows = await conn.fetch("SELECT id, at, doc, flag FROM t ORDER BY id")
        later = await conn.fetch_value(
            "SELECT count(*) FROM t WHERE at > :at", {"at": at - timedelta(microseconds=1)}
        )
        none = await conn.fetch_one("SELECT id FROM t WHERE id IN (:ids)", {"ids": []})
    assert rows == [
        {"id": 1, "at": at.astimezone(UTC), "doc": {"a": ["é", 1]}, "flag": True},
        {"id": 2, "at": None, "doc": [], "flag": False},
    ]
    assert rows[0]["at"].tzinfo is UTC
    assert later == 1  # a bound datetime compares with stored ones, to the microsecond
    assert none is None


async def _read(db: Database, sql: str, *, within: float = 10.0) -> list[Row]:
    async with asyncio.timeout(within):
        async with db.read() as conn:
            return await conn.fetch(sql)


async def _write(db: Database, *statements: str, fail: bool = False, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        async with db.transaction() as conn:
            for sql in statements:
                await conn.execute(sql)
            if fail:
                raise RuntimeError("the caller changed its mind")


async def test_a_driver_error_is_a_database_error_and_the_connection_goes_on(db: Database) -> None:
    with pytest.raises(DatabaseError, match=r"no such table|does not exist"):
        await _read(db, "SELECT * FROM no_such_table")
    await _write(db, "INSERT INTO t (id) VALUES (1)")
    with pytest.raises(DatabaseError):  # a duplicate key: the transaction is rolled back
        await _write(db, "INSERT INTO t (id) VALUES (2)", "INSERT INTO t (id) VALUES (1)")
    assert await _read(db, "SELECT id FROM t") == [{"id": 1}]


async def test_a_block_that_raises_rolls_back(db: Database) -> None:
    with pytest.raises(RuntimeError):
        await _write(db, "INSERT INTO t (id) VALUES (1)", fail=True)
    assert await _read(db, "SELECT id FROM t") == []


async def test_a_timed_out_statement_is_stopped_and_its_connection_reused(db: Database) -> None:
    slow = SLOW[db.dialect.name]
    for _ in range(6):  # more than the pool holds: every connection comes back
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await _read(db, slow, within=0.2)
        async with asyncio.timeout(2.0):
            async with db.read() as conn:
                assert await conn.fetch_value("SELECT 1") == 1
        assert asyncio.get_running_loop().time() - started < 2.0


async def test_a_timed_out_transaction_is_rolled_back_and_frees_the_writer(db: Database) -> None:
    with pytest.raises(TimeoutError):
        await _write(db, "INSERT INTO t (id) VALUES (1)", SLOW[db.dialect.name], within=0.3)
    await _write(db, "INSERT INTO t (id) VALUES (2)", within=2.0)
    assert await _read(db, "SELECT id FROM t") == [{"id": 2}]


async def test_reads_do_not_wait_for_an_open_transaction(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO t (id) VALUES (1)")
        async with asyncio.timeout(1.0):
            async with db.read() as other:  # another connection: the last commit, at once
                assert await other.fetch_value("SELECT count(*) FROM t") == 0
    async with db.read() as conn:
        assert await conn.fetch_value("SELECT count(*) FROM t") == 1


async def test_locks_serialize_transactions(db: Database) -> None:
    order: list[str] = []

    async def take(name: str, hold: float) -> None:
        async with db.transaction() as conn:
            await conn.lock("a lock", 42)
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    first = asyncio.create_task(take("first", 0.3))
    await asyncio.sleep(0.1)
    await take("second", 0)
    await first
    assert order == ["first in", "first out", "second in", "second out"]
