"""The build store's own small async database layer: plain SQL on SQLite (the standard library's sqlite3,
a thread per connection) and PostgreSQL (asyncpg). base.py says what it offers; dialects.py where the two
differ; values.py how values are stored. It replaced SQLAlchemy's async engine in the service (issue 16:
~20 MB of its idle memory); SQLAlchemy and Alembic are loaded only to migrate (store/migrate.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ...db_url import StoreURL
from .base import Connection, Database, DatabaseError, Row, first_line
from .dialects import Dialect
from .values import Json, Kind

__all__ = [
    "Connection",
    "Database",
    "DatabaseError",
    "Dialect",
    "Json",
    "Kind",
    "Row",
    "connect",
    "first_line",
]


def connect(target: StoreURL, *, timeout: float, kinds: Mapping[str, Kind]) -> Database:
    """A database for `target` (nothing is connected yet); a SQLite file's directory is made (0700).
    `timeout` bounds each wait: for a lock, a connection, a statement."""
    if target.backend == "sqlite":
        from .sqlite import SqliteDatabase

        if target.path not in ("", ":memory:"):
            Path(target.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return SqliteDatabase(target.path, timeout=timeout, kinds=kinds)
    from .postgres import PostgresDatabase  # asyncpg: only for a PostgreSQL store

    return PostgresDatabase(target.connect, timeout=timeout, kinds=kinds)
