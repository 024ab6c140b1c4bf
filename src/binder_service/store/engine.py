"""Opening the build store: the engine, SQLite's pragmas, migrations to head, clear start-up errors.

Alembic is imported only when the schema must change (a new store, an upgrade): a store at `HEAD` is
opened without it, and `serve` runs any migration in a child process (`check_store`), so the service
never holds Alembic, Mako and the SQL dialects they load (~11 MB of its idle memory; issue 16).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..db_url import store_url

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "binder_service_schema"
_PG_MIGRATION_LOCK = 0x62696E64  # "bind": replicas starting together migrate one at a time
# The newest revision in migrations/versions: a store there needs no Alembic. A new migration moves it
# (tests/store/test_migrations.py checks it against Alembic's own head).
HEAD = "0005"
CHILD_START = 60.0  # seconds for the migrating child to start (it imports Alembic) on a slow machine


class StoreOpenError(RuntimeError):
    """The build store cannot be opened: unreachable, corrupt, locked, or newer than this release."""


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL may still hold a secret
        return "<unparsable database URL>"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", VERSION_TABLE)
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def create_engine(url: str, *, timeout: float) -> AsyncEngine:
    """An async engine for `url` (any form db_url.py accepts; ValueError for others); SQLite files get WAL
    and a busy timeout, PostgreSQL a connect timeout."""
    target = store_url(url)
    parsed = make_url(target.url)
    args: dict[str, Any] = {}
    connect: dict[str, Any] = dict(target.connect)
    if target.backend == "sqlite":
        connect["timeout"] = timeout  # seconds to wait for a lock held by another connection
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    else:
        connect["timeout"] = timeout  # asyncpg's connect timeout
        connect["command_timeout"] = timeout
        args["pool_pre_ping"] = True  # a restarted server leaves dead pooled connections behind
        args["pool_size"] = 5
        args["max_overflow"] = 5
        args["pool_timeout"] = timeout
    engine = create_async_engine(target.url, connect_args=connect, **args)
    if target.backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at every checkpoint, fast per commit
    cursor.close()


async def open_engine(url: str, *, op_timeout: float) -> AsyncEngine:
    """Create the engine and migrate the database to this release's head; StoreOpenError if it cannot."""
    engine, _ = await _open(url, op_timeout=op_timeout, upgrade=True)
    return engine


async def _open(url: str, *, op_timeout: float, upgrade: bool) -> tuple[AsyncEngine, bool]:
    """The engine, and whether the database is at `HEAD` (after migrating it, with `upgrade`)."""
    shown, timeout = safe_url(url), op_timeout
    try:
        engine = create_engine(url, timeout=timeout)
    except (SQLAlchemyError, ImportError, ValueError, OSError) as e:
        raise StoreOpenError(f"cannot use database {shown}: {_reason(e, url)}") from None
    try:
        async with asyncio.timeout(timeout * 3):
            async with engine.begin() as conn:
                at_head = await conn.run_sync(_migrate, upgrade)
    except StoreOpenError:
        await engine.dispose()
        raise
    except TimeoutError:
        await engine.dispose()
        raise StoreOpenError(f"database {shown} did not answer within {timeout * 3:g} seconds") from None
    except (SQLAlchemyError, OSError) as e:
        await engine.dispose()
        raise StoreOpenError(f"cannot open database {shown}: {_reason(e, url)}") from None
    return engine, at_head


def _migrate(conn: Connection, upgrade: bool) -> bool:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    elif conn.dialect.name == "sqlite":
        # Fail here, clearly, on a file that is not a database (before Alembic's own reads).
        conn.execute(text("SELECT count(*) FROM sqlite_master"))
    if _revision(conn) == HEAD:
        return True  # nothing to migrate: Alembic is not even imported
    if not upgrade:
        return False
    _upgrade(conn)
    return True


def _revision(conn: Connection) -> str | None:
    """The database's schema revision, read as Alembic writes it (None: a new database)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()  # noqa: S608


def _upgrade(conn: Connection) -> None:
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


def _reason(e: BaseException, url: str) -> str:
    """A short, secret-free reason: the driver's message, with SQLite's usual suspects explained."""
    orig = e.orig if isinstance(e, DBAPIError) else e
    message = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
    with contextlib.suppress(ValueError):
        password = urlsplit(url.strip()).password
        if password:  # asyncpg reads a libpq URL itself: its messages must not quote it
            message = message.replace(password, "***")
    lowered = message.lower()
    if "file is not a database" in lowered or "malformed" in lowered:
        return f"{message} (the file is corrupt or not SQLite: restore it from a backup or move it away)"
    if "database is locked" in lowered:
        return f"{message} (another process holds a lock on it: is a second service using the same file?)"
    if "unable to open database file" in lowered:
        return f"{message} (check that the directory exists and is writable)"
    return message[:300]


async def check_store(url: str, *, op_timeout: float) -> None:
    """Open (and migrate) the store once and close it: StoreOpenError with the reason if it cannot.

    A migration runs in a child process (`python -m binder_service.store.migrate`), so the process that
    checks (the service) never imports Alembic; the URL goes to the child on its stdin, never its argv."""
    engine, at_head = await _open(url, op_timeout=op_timeout, upgrade=False)
    await engine.dispose()
    if at_head:
        return
    shown, limit = safe_url(url), op_timeout * 3 + CHILD_START
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "binder_service.store.migrate",
        str(op_timeout),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,  # its one-line reason when it cannot; its log goes to ours
    )
    try:
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate(url.encode() + b"\n")
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise StoreOpenError(f"migrating database {shown} did not finish within {limit:g} seconds") from None
    if proc.returncode != 0:
        lines = out.decode("utf-8", "replace").strip().splitlines()
        raise StoreOpenError(lines[-1] if lines else f"migrating database {shown} failed ({proc.returncode})")
