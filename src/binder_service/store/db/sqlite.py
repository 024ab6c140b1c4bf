"""SQLite through the standard library: each connection lives in a thread of its own.

A connection is opened, used and closed only in its thread (what aiosqlite does, without it): the
event loop hands it one statement at a time and awaits the answer. Every connection runs in WAL mode
(readers never wait for the writer) with `synchronous=NORMAL` and a busy timeout (how long a statement
waits for another process's lock). A few connections are kept (`POOL_SIZE`): reads go on while the
batch writer writes. Writers of this process queue for one another here, so they never poll SQLite's
lock against each other; each transaction starts with `BEGIN IMMEDIATE`.

A block that fails or is cancelled leaves its connection to clean up after the statement it may still be
running (interrupted, then rolled back): the connection goes back to the pool only once that is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .base import Connection, Database, DatabaseError, Params, Row, first_line
from .dialects import SQLITE
from .sql import bind, bind_many
from .values import FROM_SQLITE, Decoders, Kind, decode, decoders, to_sqlite

log = logging.getLogger(__name__)

T = TypeVar("T")
POOL_SIZE = 4  # connections (and threads) at most: the writer's, and reads beside it


class _Worker:
    """One connection and the one thread that uses it."""

    def __init__(self, path: str, timeout: float, kinds: Mapping[str, Kind]) -> None:
        self._path = path
        self._timeout = timeout
        self._kinds = kinds
        self._plans: dict[tuple[str, ...], Decoders] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="build-store-sqlite")
        self._raw: sqlite3.Connection | None = None
        self.running = False  # a statement runs in the thread now

    # --- from the event loop ---

    async def call(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._guarded, work, *args)

    def submit(self, work: Callable[..., T], *args: Any) -> Future[T]:
        return self._thread.submit(self._guarded, work, *args)

    def interrupt(self) -> None:
        """Stop the statement running in the thread (it raises there), if any."""
        if self.running and self._raw is not None:
            with contextlib.suppress(sqlite3.Error):
                self._raw.interrupt()  # the one call sqlite3 allows from another thread

    def close_soon(self) -> Future[None]:
        """Close the connection after what is queued, then let the thread end."""
        closed = self._thread.submit(self._close)
        self._thread.shutdown(wait=False)
        return closed

    # --- in the thread ---

    def _guarded(self, work: Callable[..., T], *args: Any) -> T:
        self.running = True
        try:
            return work(*args)
        except sqlite3.Error as e:
            raise DatabaseError(first_line(e)) from e
        finally:
            self.running = False

    def open(self) -> None:
        raw = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None)
        try:
            raw.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            raw.execute("PRAGMA synchronous=NORMAL")  # durable at every checkpoint, fast per commit
        except BaseException:
            raw.close()
            raise
        self._raw = raw

    def _close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def _conn(self) -> sqlite3.Connection:
        if self._raw is None:
            raise DatabaseError("the connection is closed")
        return self._raw

    def execute(self, sql: str, params: Params) -> int:
        text, args = bind(sql, params, SQLITE.mark)
        cursor = self._conn().execute(text, [to_sqlite(a) for a in args])
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        text, args = bind_many(sql, rows, SQLITE.mark)
        self._conn().executemany(text, [[to_sqlite(a) for a in row] for row in args]).close()

    def fetch(self, sql: str, params: Params) -> list[Row]:
        text, args = bind(sql, params, SQLITE.mark)
        cursor = self._conn().execute(text, [to_sqlite(a) for a in args])
        try:
            names = tuple(d[0] for d in cursor.description or ())
            rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        finally:
            cursor.close()
        plan = self._plans.get(names)
        if plan is None:
            plan = self._plans[names] = decoders(names, self._kinds, FROM_SQLITE)
        return decode(rows, plan)

    def reset(self) -> None:
        """End a transaction a failed or cancelled block left open."""
        raw = self._conn()
        if raw.in_transaction:
            raw.execute("ROLLBACK")


class _Connection(Connection):
    dialect = SQLITE

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker

    async def execute(self, sql: str, params: Params | None = None) -> int:
        w = self._worker
        return await w.call(w.execute, sql, params or {})

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        w = self._worker
        await w.call(w.execute_many, sql, rows)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        w = self._worker
        return await w.call(w.fetch, sql, params or {})


class SqliteDatabase(Database):
    """A SQLite file (or `:memory:`, one connection) with a busy timeout of `timeout` seconds."""

    dialect = SQLITE

    def __init__(
        self, path: str, *, timeout: float, kinds: Mapping[str, Kind], size: int = POOL_SIZE
    ) -> None:
        self._path = path
        self._timeout = timeout
        self._kinds = kinds
        memory = path in ("", ":memory:")
        self._slots = asyncio.Semaphore(1 if memory else size)
        self._idle: list[_Worker] = []
        self._writing = asyncio.Lock()  # this process's writers, one at a time
        self._closed = False

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        worker = await self._checkout()
        done = False
        try:
            yield _Connection(worker)
            done = True
        finally:
            if done:
                self._checkin(worker)
            else:
                self._recycle(worker)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        await self._writing.acquire()
        try:
            worker = await self._checkout()
        except BaseException:
            self._writing.release()
            raise
        done = False
        try:
            await worker.call(worker.execute, SQLITE.begin, {})
            yield _Connection(worker)
            await worker.call(worker.execute, "COMMIT", {})
            done = True
        finally:
            if done:
                self._checkin(worker)
                self._writing.release()
            else:
                self._recycle(worker, then=self._writing.release)

    async def aclose(self) -> None:
        self._closed = True
        closing = [asyncio.wrap_future(worker.close_soon()) for worker in self._idle]
        self._idle.clear()
        await asyncio.gather(*closing, return_exceptions=True)

    async def _checkout(self) -> _Worker:
        if self._closed:
            raise DatabaseError("the build store is closed")
        await self._slots.acquire()
        if self._idle:
            return self._idle.pop()
        worker = _Worker(self._path, self._timeout, self._kinds)
        try:
            await worker.call(worker.open)
        except BaseException:
            worker.close_soon()
            self._slots.release()
            raise
        return worker

    def _checkin(self, worker: _Worker) -> None:
        if self._closed:
            worker.close_soon()
        else:
            self._idle.append(worker)
        self._slots.release()

    def _recycle(self, worker: _Worker, *, then: Callable[[], None] | None = None) -> None:
        """Put `worker` back once the statement it may still run has stopped and its transaction is
        rolled back (a connection that cannot roll back is closed)."""
        worker.interrupt()
        cleanup = asyncio.wrap_future(worker.submit(worker.reset))

        def done(f: asyncio.Future[None]) -> None:
            if f.cancelled() or f.exception() is not None:
                log.warning("build store: dropping a SQLite connection that could not roll back")
                worker.close_soon()
                self._slots.release()
            else:
                self._checkin(worker)
            if then is not None:
                then()

        cleanup.add_done_callback(done)
