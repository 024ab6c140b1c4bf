"""Faults: a corrupt, locked or unreachable database at start-up; a database that goes away mid-write."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from binder_service.errors import StoreUnavailable
from binder_service.events import BuildEvent, Phase
from binder_service.store import BuildStore, StoreOpenError
from tests.support.net import free_port
from tests.support.postgres import Cluster
from tests.support.records import record
from tests.support.waiting import await_until


async def test_a_corrupt_sqlite_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not SQLite" * 512)
    with pytest.raises(StoreOpenError, match=r"store\.sqlite.*corrupt or not SQLite"):
        await BuildStore.open(f"sqlite:///{path}", op_timeout=2.0)


async def test_a_locked_sqlite_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holding the file
    try:
        with pytest.raises(StoreOpenError, match=r"locked.*another process"):
            await BuildStore.open(f"sqlite:///{path}", op_timeout=0.3)
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_an_unreachable_server_is_a_clear_startup_error_without_the_password() -> None:
    url = f"postgresql+asyncpg://binder:s3cret@127.0.0.1:{free_port()}/binder"  # a closed loopback port
    with pytest.raises(StoreOpenError) as caught:
        await BuildStore.open(url, op_timeout=2.0)
    assert "127.0.0.1" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_a_locked_sqlite_file_mid_write_delays_writes_and_loses_none(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = await BuildStore.open(f"sqlite:///{path}", op_timeout=0.2)
    try:
        store.save_build(record("b1"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # a writer that holds the lock for a while
        for i in range(1, 301):
            store.add_event("b1", BuildEvent(i, Phase.BUILDING, f"{i}\n"))
        await await_until(lambda: store.writer.failing_since is not None, what="the writer to fail")
        other.execute("ROLLBACK")
        other.close()
        await store.flush()
        assert store.writer.failing_since is None
        assert [e.id for e in await store.events("b1")] == list(range(1, 301))
    finally:
        await store.aclose()


async def test_postgres_stopped_and_started_mid_write_loses_nothing(pg: Cluster) -> None:
    store = await BuildStore.open(pg.create_database(), op_timeout=2.0)
    try:
        store.save_build(record("b1"))
        for i in range(1, 101):
            store.add_event("b1", BuildEvent(i, Phase.BUILDING, f"{i}\n"))
        await store.flush()
        await asyncio.to_thread(pg.stop)
        try:
            for i in range(101, 201):  # the build goes on: emitting never waits for the database
                store.add_event("b1", BuildEvent(i, Phase.BUILDING, f"{i}\n"))
            await await_until(lambda: store.writer.failing_since is not None, what="the writer to fail")
            assert store.writer.backlog == 100
            with pytest.raises(StoreUnavailable):  # a read meanwhile: a clear error, not a hang
                await store.get_build("b1")
        finally:
            await asyncio.to_thread(pg.start)
        await store.flush()
        assert [e.id for e in await store.events("b1")] == list(range(1, 201))
    finally:
        await store.aclose()
