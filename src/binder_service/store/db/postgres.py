"""PostgreSQL through asyncpg (the `postgres` extra), imported only for a PostgreSQL store.

A pool of up to `POOL_SIZE + OVERFLOW` connections, opened as they are needed; one unused for
`IDLE_LIFETIME` seconds is closed (asyncpg cannot keep exactly `POOL_SIZE` and close only the
overflow). Every wait is bounded by the store's timeout: connecting, waiting for a free connection,
each statement (`command_timeout`). A connection is checked before each use (`SELECT 1`, as
SQLAlchemy's `pool_pre_ping`): a restarted server leaves dead connections behind, and finding one
replaces every connection of the pool. A connection goes back to the pool with no reset statement:
the store leaves nothing in a session (its locks are transaction-scoped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import asyncpg

from .base import Connection, Database, DatabaseError, Params, Row, first_line
from .dialects import POSTGRESQL
from .sql import bind, bind_many
from .values import FROM_POSTGRES, Decoders, Kind, decode, decoders, to_postgres

POOL_SIZE, OVERFLOW = 5, 5
IDLE_LIFETIME = 300.0
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


@contextlib.contextmanager
def _driver_errors() -> Iterator[None]:
    try:
        yield
    except _DRIVER_ERRORS as e:
        raise DatabaseError(first_line(e)) from e


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """What the pool runs on a returned connection besides rolling back an open transaction."""


class _Connection(Connection):
    dialect = POSTGRESQL

    def __init__(self, raw: asyncpg.Connection, db: PostgresDatabase) -> None:
        self._raw = raw
        self._db = db

    async def execute(self, sql: str, params: Params | None = None) -> int:
        text, args = bind(sql, params or {}, POSTGRESQL.mark)
        with _driver_errors():
            status = await self._raw.execute(text, *[to_postgres(a) for a in args])
        count = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 1", "SELECT 1"
        return int(count) if count.isdigit() else 0

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        if not rows:
            return
        text, args = bind_many(sql, rows, POSTGRESQL.mark)
        with _driver_errors():
            await self._raw.executemany(text, [[to_postgres(a) for a in row] for row in args])

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        text, args = bind(sql, params or {}, POSTGRESQL.mark)
        with _driver_errors():
            records = await self._raw.fetch(text, *[to_postgres(a) for a in args])
        if not records:
            return []
        names = tuple(records[0].keys())
        return decode([dict(r.items()) for r in records], self._db.plan(names))


class PostgresDatabase(Database):
    """A PostgreSQL database: `connect` holds asyncpg's `dsn` and connect arguments (the password)."""

    dialect = POSTGRESQL

    def __init__(self, connect: Mapping[str, Any], *, timeout: float, kinds: Mapping[str, Kind]) -> None:
        self._connect = dict(connect)
        self._timeout = timeout
        self._kinds = kinds
        self._plans: dict[tuple[str, ...], Decoders] = {}
        self._pool: asyncpg.Pool | None = None
        self._starting = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:  # never the password
        return "PostgresDatabase()"

    def plan(self, names: tuple[str, ...]) -> Decoders:
        plan = self._plans.get(names)
        if plan is None:
            plan = self._plans[names] = decoders(names, self._kinds, FROM_POSTGRES)
        return plan

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        pool = await self._the_pool()
        raw = await self._acquire(pool)
        try:
            yield _Connection(raw, self)
        finally:
            # Rolls back what a failed or cancelled block left open (asyncpg waits for a cancelled
            # statement first); a connection that cannot is closed and replaced.
            with contextlib.suppress(*_DRIVER_ERRORS, OSError, TimeoutError):
                await pool.release(raw, timeout=self._timeout)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.read() as conn:
            assert isinstance(conn, _Connection)
            with _driver_errors():
                # asyncpg sends the dialect's BEGIN, then COMMIT, or ROLLBACK when the block raises.
                async with conn._raw.transaction():
                    yield conn

    async def aclose(self) -> None:
        self._closed = True
        if self._pool is not None:
            with contextlib.suppress(*_DRIVER_ERRORS, OSError, TimeoutError):
                await self._pool.close()

    async def _the_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise DatabaseError("the build store is closed")
        if self._pool is None:
            async with self._starting:
                if self._pool is None:
                    with _driver_errors():
                        # No connection yet (min_size 0): the first acquire connects.
                        self._pool = await asyncpg.create_pool(
                            min_size=0,
                            max_size=POOL_SIZE + OVERFLOW,
                            max_inactive_connection_lifetime=IDLE_LIFETIME,
                            timeout=self._timeout,  # to connect
                            command_timeout=self._timeout,  # each statement
                            reset=_no_reset,
                            **self._connect,
                        )
        return self._pool

    async def _acquire(self, pool: asyncpg.Pool) -> asyncpg.Connection:
        with _driver_errors():
            raw = await pool.acquire(timeout=self._timeout)
            try:
                await raw.execute("SELECT 1")
                return raw
            except (*_DRIVER_ERRORS, OSError, TimeoutError):
                # Dead (the server restarted, or the network dropped it): so are the others.
                raw.terminate()
                await pool.release(raw)
                await pool.expire_connections()
            return await pool.acquire(timeout=self._timeout)
