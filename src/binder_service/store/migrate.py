"""Migrations: Alembic on SQLAlchemy, and `python -m binder_service.store.migrate TIMEOUT`, which migrates
the build store whose URL is on stdin.

The one module of the store that loads SQLAlchemy and Alembic. `check_store` runs it as a child process
when a store is new or older than this release, so that the service never loads them; `BuildStore.open`
imports it only when the schema must change. The child exits 0 when the store is at head; otherwise 2,
with the reason (a StoreOpenError's message, secret-free) as the last line on stdout.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic.config import Config
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import URL, Connection, create_engine
from sqlalchemy.exc import SQLAlchemyError

from ..db_url import safe_url, store_url
from .opening import HEAD, MIGRATION_LOCK, VERSION_TABLE, StoreOpenError, reason

log = logging.getLogger(__name__)

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", VERSION_TABLE)
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def in_transaction(url: str, work: Callable[[Connection], T], *, op_timeout: float) -> T:
    """`work(conn)` on a SQLAlchemy connection to the store at `url`, in one transaction: SQLite through
    the standard library's driver (in a thread), PostgreSQL through asyncpg (SQLAlchemy's asyncio
    extension, the `postgres` extra). `op_timeout` bounds each wait (a lock, connecting, a statement)."""
    timeout = op_timeout
    target = store_url(url)
    if target.backend == "sqlite":
        engine = create_engine(URL.create("sqlite", database=target.path), connect_args={"timeout": timeout})
        event.listen(engine, "connect", _sqlite_pragmas)

        def run() -> T:
            try:
                with engine.begin() as conn:
                    return work(conn)
            finally:
                engine.dispose()

        return await asyncio.to_thread(run)
    from sqlalchemy.ext.asyncio import create_async_engine

    connect: dict[str, Any] = {**target.connect, "timeout": timeout, "command_timeout": timeout}
    async_engine = create_async_engine("postgresql+asyncpg://", connect_args=connect)
    try:
        async with async_engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await async_engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # as the store's own connections (store/db/sqlite.py)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def upgrade(url: str, *, op_timeout: float) -> None:
    """Migrate the store at `url` to this release's head; StoreOpenError if it cannot be."""
    shown, timeout = safe_url(url), op_timeout
    try:
        async with asyncio.timeout(timeout * 3):
            await in_transaction(url, _migrate, op_timeout=timeout)
    except StoreOpenError:
        raise
    except TimeoutError:
        raise StoreOpenError(f"database {shown} did not answer within {timeout * 3:g} seconds") from None
    except (ImportError, ValueError) as e:
        raise StoreOpenError(f"cannot use database {shown}: {reason(e, url)}") from None
    except (SQLAlchemyError, OSError) as e:
        raise StoreOpenError(f"cannot open database {shown}: {reason(e, url)}") from None


def _migrate(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
    elif conn.dialect.name == "sqlite":
        # Fail here, clearly, on a file that is not a database (before Alembic's own reads).
        conn.execute(text("SELECT count(*) FROM sqlite_master"))
    if inspect(conn).has_table(VERSION_TABLE):
        revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        if revision == HEAD:
            return  # another process migrated it meanwhile
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    scripts = ScriptDirectory.from_config(alembic_config())
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise StoreOpenError(
            f"the database is at schema revision {current!r}, which this release does not know: "
            "it was written by a newer binder-service; upgrade this one"
        )
    if current != scripts.get_current_head():
        log.info(
            "migrating the build store", extra={"from_revision": current, "to": scripts.get_current_head()}
        )
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    url = sys.stdin.readline().rstrip("\n")
    try:
        asyncio.run(upgrade(url, op_timeout=float(argv[0])))
    except StoreOpenError as e:
        print(e, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
