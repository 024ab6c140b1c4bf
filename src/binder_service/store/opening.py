"""Opening the build store: its database, the schema revision it is at, clear start-up errors.

The service runs on the store's own database layer (store/db/) and never loads SQLAlchemy or Alembic
(~31 MB of its idle memory together; issue 16): a store at `HEAD` is opened as it is, and `serve` runs
any migration in a child process (`check_store` → `python -m binder_service.store.migrate`). Other
callers of `BuildStore.open` (tests, the housekeeping command) migrate in their own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from urllib.parse import urlsplit

from ..db_url import safe_url, store_url
from .db import Database, DatabaseError, connect, first_line
from .schema import KINDS

log = logging.getLogger(__name__)

VERSION_TABLE = "binder_service_schema"
MIGRATION_LOCK = 0x62696E64  # "bind": replicas starting together migrate one at a time (PostgreSQL)
# The newest revision in migrations/versions: a store there needs no migration. A new migration moves it
# (tests/store/test_migrations.py checks it against Alembic's own head).
HEAD = "0005"
CHILD_START = 60.0  # seconds for the migrating child to start (it imports Alembic) on a slow machine


class StoreOpenError(RuntimeError):
    """The build store cannot be opened: unreachable, corrupt, locked, or newer than this release."""


async def open_database(url: str, *, op_timeout: float) -> Database:
    """The store's database, migrated to this release's `HEAD` (here, when it is not there yet);
    StoreOpenError if it cannot be."""
    db, revision = await _open(url, op_timeout=op_timeout)
    if revision != HEAD:
        from .migrate import upgrade  # SQLAlchemy and Alembic: only when the schema must change

        try:
            await upgrade(url, op_timeout=op_timeout)
        except BaseException:
            await db.aclose()
            raise
    return db


async def _open(url: str, *, op_timeout: float) -> tuple[Database, str | None]:
    """The database, and the schema revision it is at (None: a new database)."""
    shown, timeout = safe_url(url), op_timeout
    try:
        db = connect(store_url(url), timeout=timeout, kinds=KINDS)
    except (ImportError, ValueError, OSError) as e:
        raise StoreOpenError(f"cannot use database {shown}: {reason(e, url)}") from None
    try:
        async with asyncio.timeout(timeout * 3):
            revision = await _revision(db)
    except TimeoutError:
        await db.aclose()
        raise StoreOpenError(f"database {shown} did not answer within {timeout * 3:g} seconds") from None
    except (DatabaseError, OSError) as e:
        await db.aclose()
        raise StoreOpenError(f"cannot open database {shown}: {reason(e, url)}") from None
    return db, revision


async def _revision(db: Database) -> str | None:
    """The database's schema revision, read as Alembic writes it, after any migration running now."""
    async with db.transaction() as conn:
        await conn.lock(MIGRATION_LOCK)
        if conn.dialect.name == "sqlite":
            # Fail here, clearly, on a file that is not a database.
            await conn.fetch_value("SELECT count(*) FROM sqlite_master")
        if not await conn.fetch_value(conn.dialect.table_exists, {"name": VERSION_TABLE}):
            return None
        found = await conn.fetch_value(f"SELECT version_num FROM {VERSION_TABLE}")
        return None if found is None else str(found)


def reason(e: BaseException, url: str) -> str:
    """A short, secret-free reason: the driver's message, with SQLite's usual suspects explained."""
    orig = getattr(e, "orig", None) or e  # SQLAlchemy's errors (the migrating child) wrap the driver's
    message = first_line(orig)
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
    checks (the service) never imports SQLAlchemy or Alembic; the URL goes to the child on its stdin,
    never its argv."""
    db, revision = await _open(url, op_timeout=op_timeout)
    await db.aclose()
    if revision == HEAD:
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
