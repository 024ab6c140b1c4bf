"""Migrations: the models and the shipped migrations agree, a later release opens an older database, and
the service never loads SQLAlchemy or Alembic to open a store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from binder_service.store import BuildStore, StoreOpenError, check_store
from binder_service.store.migrate import alembic_config, head_revision, in_transaction
from binder_service.store.models import Base
from binder_service.store.opening import HEAD, VERSION_TABLE


def _upgrade_to(conn: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


async def _version(store: BuildStore) -> str:
    async with store.db.read() as conn:
        return str(await conn.fetch_value(f"SELECT version_num FROM {VERSION_TABLE}"))


async def test_migrations_build_exactly_the_models(db_url: str) -> None:
    store = await BuildStore.open(db_url, op_timeout=5.0)
    await store.aclose()
    diff = await in_transaction(
        db_url,
        lambda c: compare_metadata(
            MigrationContext.configure(c, opts={"version_table": VERSION_TABLE}), Base.metadata
        ),
        op_timeout=5.0,
    )
    assert diff == []


async def test_an_older_database_is_migrated_and_keeps_its_builds(db_url: str) -> None:
    # A database as the first release left it (schema 0001), holding one finished build and its event.
    def first_release(conn: Connection) -> None:
        _upgrade_to(conn, "0001")
        conn.execute(
            text(
                'INSERT INTO builds (id, image, provider, repository, build_slug, ref, "commit", '
                "content_provider, requesters, status, cached, created_at, finished_at, phase_times, "
                "last_event_id) VALUES ('old1', 'reg/img:1', 'git', 'https://example.org/r.git', 'r', "
                "'main', 'abc', 'Git', '[\"alice\"]', 'ready', :f, :t, :t, '{}', 1)"
            ),
            {"f": False, "t": datetime(2026, 1, 1)},
        )
        conn.execute(
            text(
                "INSERT INTO events (build_id, event_id, phase, message, created_at) "
                "VALUES ('old1', 1, 'ready', 'Done!\n', :t)"
            ),
            {"t": datetime(2026, 1, 1)},
        )

    await in_transaction(db_url, first_release, op_timeout=5.0)

    store = await BuildStore.open(db_url, op_timeout=5.0)  # this release: upgrades to head
    try:
        old = await store.get_build("old1")
        assert old is not None
        assert old.status == "ready"
        assert old.created_at == datetime(2026, 1, 1, tzinfo=UTC)
        assert (old.owner, old.pid, old.log_path, old.spec_key) == (None, None, None, None)
        assert [e.message for e in await store.events("old1")] == ["Done!\n"]
        assert await _version(store) == head_revision()
    finally:
        await store.aclose()


async def test_a_database_from_a_newer_release_is_refused(db_url: str) -> None:
    store = await BuildStore.open(db_url, op_timeout=5.0)
    async with store.db.transaction() as conn:
        await conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    await store.aclose()
    with pytest.raises(StoreOpenError, match="newer binder-service"):
        await BuildStore.open(db_url, op_timeout=5.0)


async def test_opening_twice_is_a_no_op(db_url: str) -> None:
    for _ in range(2):
        store = await BuildStore.open(db_url, op_timeout=5.0)
        await store.aclose()


def test_head_is_alembics_head() -> None:
    # The store opens without Alembic when it is at HEAD: a new migration must move HEAD too.
    assert head_revision() == HEAD


_CHECK = """
import asyncio, sys
import binder_service.app, binder_service.cli  # what `serve` imports
from binder_service.store import BuildStore, check_store
from tests.support.records import record
url = sys.stdin.readline().strip()
asyncio.run(check_store(url, op_timeout=5.0))
async def use():
    store = await BuildStore.open(url, op_timeout=5.0)
    store.save_build(record("b1"))
    await store.flush()
    assert (await store.get_build("b1")) is not None
    await store.aclose()
asyncio.run(use())
libraries = {"alembic", "mako", "sqlalchemy", "aiosqlite", "asyncpg"}
print(sorted({m.split(".")[0] for m in sys.modules} & libraries))
"""


def _check_in_a_process(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CHECK],
        input=url + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_service_never_imports_sqlalchemy_or_alembic(db_url: str) -> None:
    # A new store is migrated by a child process; the service opens a store at head, writes and reads it
    # on its own database layer (issue 16: SQLAlchemy ~20 MB, Alembic ~11 MB of its idle memory). A
    # SQLite store does not load asyncpg either.
    loaded = "['asyncpg']" if db_url.startswith("postgresql") else "[]"
    first = await asyncio.to_thread(_check_in_a_process, db_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == loaded
    assert "migrating the build store" in first.stderr  # the child's log reaches the service's
    store = await BuildStore.open(db_url, op_timeout=5.0)
    try:
        assert await _version(store) == HEAD
    finally:
        await store.aclose()
    again = await asyncio.to_thread(_check_in_a_process, db_url)
    assert (again.returncode, again.stdout.strip()) == (0, loaded)
    assert "migrating" not in again.stderr


async def test_check_store_refuses_a_newer_database_through_the_child(db_url: str) -> None:
    store = await BuildStore.open(db_url, op_timeout=5.0)
    async with store.db.transaction() as conn:
        await conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    await store.aclose()
    with pytest.raises(StoreOpenError, match="newer binder-service"):
        await check_store(db_url, op_timeout=5.0)


def test_a_sqlite_store_migrates_without_sqlalchemys_asyncio_extension(tmp_path: Path) -> None:
    # `pip install binder-service` has no greenlet (SQLAlchemy's asyncio extra comes with `postgres`):
    # the migrating child reaches SQLite through the standard library's driver.
    program = (
        "import sys; sys.modules['greenlet'] = None\n"
        "from binder_service.store.migrate import main\n"
        "sys.exit(main(['5']))"
    )
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    done = subprocess.run(
        [sys.executable, "-c", program], input=url + "\n", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migrating the build store" in done.stderr
