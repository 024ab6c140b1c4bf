"""The background writer: builds, events and image records queued in memory, written in batches.

`put` only appends (the build and its watchers never wait for the database). A failed batch is retried
with a bounded backoff until it is written: a slow or briefly unavailable database delays the record,
it never loses an event. Every write is idempotent (events by (build, id), builds and images by key),
so a batch retried after an ambiguous failure writes nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .db import Connection, Database, DatabaseError, Json, first_line
from .records import BuildRecord, EventWrite, ImageTouch, RequesterWrite
from .schema import BUILD_COLUMNS, EVENT_COLUMNS, IMAGE_COLUMNS, build_row, names, params, quoted

log = logging.getLogger(__name__)

Op = BuildRecord | EventWrite | ImageTouch | RequesterWrite
MAX_BATCH = 2000
BACKOFF_START, BACKOFF_MAX = 0.05, 5.0
MAX_IMAGE_REQUESTERS = 1000  # an image's requesters list keeps the most recent ones

# Idempotent, all of them: a batch retried after an ambiguous failure writes nothing twice.
_UPSERT_BUILD = (
    f"INSERT INTO builds ({names(BUILD_COLUMNS)}) VALUES ({params(BUILD_COLUMNS)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{quoted(c)} = excluded.{quoted(c)}" for c in BUILD_COLUMNS if c not in ("id", "created_at"))
)
_INSERT_EVENT = (
    f"INSERT INTO events ({names(EVENT_COLUMNS)}) VALUES ({params(EVENT_COLUMNS)}) ON CONFLICT DO NOTHING"
)
_INSERT_REQUESTER = (
    "INSERT INTO build_requesters (build_id, requester, created_at, cached) "
    "VALUES (:build_id, :requester, :created_at, :cached) ON CONFLICT DO NOTHING"
)
_UPSERT_IMAGE = (
    f"INSERT INTO images ({names(IMAGE_COLUMNS)}) VALUES ({params(IMAGE_COLUMNS)}) "
    "ON CONFLICT (image) DO UPDATE SET built_at = excluded.built_at, "
    "last_requested_at = excluded.last_requested_at, requesters = excluded.requesters"
)


class BatchWriter:
    """Queues writes and applies them in order, in batches, from one background task."""

    def __init__(
        self,
        db: Database,
        *,
        timeout: float,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._timeout = timeout
        self._max_batch = max_batch
        self._clock = clock
        self._pending: deque[Op] = deque()
        self._queued = 0  # ops ever put
        self._written = 0  # ops ever written
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failing_since: float | None = None  # the current run of failed attempts began then
        self.last_error: str | None = None

    @property
    def backlog(self) -> int:
        return self._queued - self._written

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="build-store-writer")

    def put(self, op: Op) -> None:
        self._pending.append(op)
        self._queued += 1
        self._wake.set()

    async def flush(self) -> None:
        """Return once everything put before this call is written."""
        target = self._queued
        if self._written >= target:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        await waiter

    async def aclose(self, *, grace: float) -> None:
        """Write what is queued (up to `grace` seconds), then stop."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(grace):
                await self.flush()
        except TimeoutError:
            log.error(
                "build store: database unavailable at shutdown; unwritten records are lost",
                extra={"backlog": self.backlog, "error": self.last_error},
            )
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
                await self._write_until_done(batch)
                self._written += len(batch)
                self._notify()

    async def _write_until_done(self, batch: Sequence[Op]) -> None:
        delay = BACKOFF_START
        attempts = 0
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    async with self._db.transaction() as conn:
                        await write_batch(conn, batch)
            except (DatabaseError, OSError, TimeoutError) as e:
                attempts += 1
                self.last_error = _short(e)
                if self.failing_since is None:
                    self.failing_since = self._clock()
                # Once, then every 20th attempt: a clear record of an outage without flooding the log.
                if attempts == 1 or attempts % 20 == 0:
                    log.warning(
                        "build store: write failed; retrying",
                        extra={"attempt": attempts, "backlog": self.backlog, "error": self.last_error},
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if self.failing_since is not None:
                log.warning(
                    "build store: writing again",
                    extra={
                        "attempts": attempts,
                        "outage_seconds": round(self._clock() - self.failing_since, 1),
                    },
                )
                self.failing_since = None
                self.last_error = None
            return

    def _notify(self) -> None:
        keep = []
        for target, waiter in self._waiters:
            if self._written >= target:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                keep.append((target, waiter))
        self._waiters = keep


def _short(e: BaseException) -> str:
    return first_line(e)[:200]


async def write_batch(conn: Connection, batch: Iterable[Op]) -> None:
    """Apply one batch in one transaction: the latest snapshot of each build, new events, image touches."""
    builds: dict[str, BuildRecord] = {}
    events: list[dict[str, Any]] = []
    touches: list[ImageTouch] = []
    joined: list[dict[str, Any]] = []
    for op in batch:
        if isinstance(op, BuildRecord):
            builds[op.id] = op
        elif isinstance(op, EventWrite):
            e = op.event
            events.append(
                {
                    "build_id": op.build_id,
                    "event_id": e.id,
                    "phase": e.phase.value,
                    "message": e.message,
                    "image_name": e.image_name,
                    "code": e.code,
                    "queue_position": e.queue_position,
                    "created_at": op.at,
                }
            )
        elif isinstance(op, RequesterWrite):
            joined.append(
                {
                    "build_id": op.build_id,
                    "requester": op.requester,
                    "created_at": op.created_at,
                    "cached": False,
                }
            )
        else:
            touches.append(op)
    if builds:
        await _write_builds(conn, list(builds.values()))
    if events:
        await conn.execute_many(_INSERT_EVENT, events)
    if touches:
        await _write_images(conn, touches)
    if joined:
        await conn.execute_many(_INSERT_REQUESTER, joined)


async def _write_builds(conn: Connection, records: list[BuildRecord]) -> None:
    await conn.execute_many(_UPSERT_BUILD, [build_row(r) for r in records])
    who = [
        {"build_id": r.id, "requester": name, "created_at": r.created_at, "cached": r.cached}
        for r in records
        for name in r.requesters
    ]
    if who:
        await conn.execute_many(_INSERT_REQUESTER, who)


async def _write_images(conn: Connection, touches: list[ImageTouch]) -> None:
    merged: dict[str, dict[str, Any]] = {}
    existing = {
        row["image"]: row
        for row in await conn.fetch(
            "SELECT image, built_at, requesters FROM images WHERE image IN (:images)",
            {"images": sorted({t.image for t in touches})},
        )
    }
    for touch in touches:
        row = merged.get(touch.image)
        if row is None:
            old = existing.get(touch.image)
            row = merged[touch.image] = {
                "image": touch.image,
                "provider": touch.provider,
                "build_slug": touch.build_slug,
                "built_at": old["built_at"] if old is not None else None,
                "last_requested_at": touch.at,
                "requesters": list(old["requesters"]) if old is not None else [],
            }
        row["last_requested_at"] = max(row["last_requested_at"], touch.at)
        if touch.built:
            row["built_at"] = touch.at
        if touch.requester is not None:
            people: list[str] = row["requesters"]
            if touch.requester in people:
                people.remove(touch.requester)
            people.append(touch.requester)  # most recent last
            del people[:-MAX_IMAGE_REQUESTERS]
    await conn.execute_many(
        _UPSERT_IMAGE, [{**row, "requesters": Json(row["requesters"])} for row in merged.values()]
    )
