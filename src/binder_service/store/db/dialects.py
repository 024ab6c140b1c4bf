"""Where SQLite and PostgreSQL differ, for the store's statements: the one place that says so.

Everything else the store writes is SQL both read alike: `INSERT … ON CONFLICT … DO UPDATE SET x =
excluded.x` / `DO NOTHING`, `RETURNING`, `LIMIT`, `true`/`false` (SQLite >= 3.23; bookworm ships 3.40),
double-quoted identifiers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Dialect:
    name: Literal["sqlite", "postgresql"]
    # Numbered parameters: `?1` (SQLite), `$1` (PostgreSQL); sql.py turns `:name` into them.
    mark: str
    # The larger of two values: `max(a, b)` in SQLite, `greatest(a, b)` in PostgreSQL.
    greatest: str
    # How a transaction begins: SQLite takes its one write lock at once (a transaction that reads first
    # and writes later could otherwise fail, not wait, when another wrote meanwhile).
    begin: str
    # A lock held until the transaction ends (`:key`, a signed 64-bit integer), or None: SQLite's
    # transactions hold the database's write lock from their start.
    lock: str | None
    # One row, one column: whether the table `:name` exists.
    table_exists: str

    @staticmethod
    def lock_key(name: str | int) -> int:
        """A lock name as a key for PostgreSQL's advisory locks, stable across processes and releases
        (an int is a key already)."""
        if isinstance(name, int):
            return name
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


SQLITE = Dialect(
    name="sqlite",
    mark="?",
    greatest="max",
    begin="BEGIN IMMEDIATE",
    lock=None,
    table_exists="SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name",
)

POSTGRESQL = Dialect(
    name="postgresql",
    mark="$",
    greatest="greatest",
    begin="BEGIN",
    lock="SELECT pg_advisory_xact_lock(:key)",
    table_exists="SELECT to_regclass(:name) IS NOT NULL",
)
