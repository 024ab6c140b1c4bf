"""What the store asks of a database, SQLite and PostgreSQL alike.

    Database                one per store: a small pool of connections
    ├── read()              a connection outside any transaction: each statement sees the latest commits
    └── transaction()       one transaction, committed when the block ends, rolled back when it raises
                            or is cancelled (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `BEGIN`)
    Connection
    ├── execute, execute_many, fetch, fetch_one, fetch_value     SQL text with `:name` parameters
    └── lock(*names)        in a transaction: hold `names` until it ends, across processes and replicas

Statements are plain SQL that both dialects read alike (sql.py: `:name` parameters, lists expanded for
`IN (:names)`); what differs between them is in dialects.py. Values go in and come out as Python values
(values.py). A driver's error is a `DatabaseError` (its message's first line); `OSError` (the network)
and `TimeoutError` (a timeout the driver enforces) pass as they are.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from .dialects import Dialect

Row = dict[str, Any]
Params = Mapping[str, Any]


class DatabaseError(Exception):
    """The database refused or failed a statement, or could not be reached (the driver's own error)."""


def first_line(e: BaseException) -> str:
    """An error's message as the store shows it: its first line, or its type's name."""
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__


class Connection(ABC):
    """One connection, checked out of its database's pool for one `read` or `transaction` block."""

    dialect: Dialect

    @abstractmethod
    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; how many rows it changed."""

    @abstractmethod
    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement once for each of `rows` (no list parameters)."""

    @abstractmethod
    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """The rows of one query, as dicts keyed by column name."""

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def fetch_value(self, sql: str, params: Params | None = None) -> Any:
        """The first column of the first row (None without one)."""
        row = await self.fetch_one(sql, params)
        return None if row is None else next(iter(row.values()))

    async def lock(self, *names: str | int) -> None:
        """Hold locks on `names` (a name or a PostgreSQL advisory lock key) until the transaction ends:
        others asking for one of them wait, in any process. SQLite's transactions hold the database's
        one write lock from their start (`BEGIN IMMEDIATE`): nothing more to take. PostgreSQL's are
        taken in one order, so two transactions wanting the same names never deadlock."""
        if self.dialect.lock is None:
            return
        for key in sorted({self.dialect.lock_key(name) for name in names}):
            await self.execute(self.dialect.lock, {"key": key})


class Database(ABC):
    """A pool of connections to one database, opened lazily; `aclose` when done."""

    dialect: Dialect

    @abstractmethod
    def read(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A connection outside any transaction."""

    @abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A connection in one transaction, committed when the block ends without an error."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close every connection (a connection in use is closed when its block ends)."""
