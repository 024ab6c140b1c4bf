"""The build store: the durable record of builds, their events and the images they made.

Writes go through a `BatchWriter` (queued, batched, retried); reads go straight to the database with
a timeout and raise `StoreUnavailable` when it does not answer. Statements are plain SQL on the store's
own database layer (store/db/), the same for SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ..db_url import safe_url
from ..errors import StoreUnavailable
from ..events import BuildEvent, Phase
from . import leases, places
from .db import Connection, Database, DatabaseError, Row, first_line
from .leases import Lease
from .opening import open_database
from .records import ACTIVE, BuildRecord, EventWrite, ImageTouch, Purged, RequesterWrite
from .schema import BUILD_COLUMNS, names
from .writer import BatchWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
PURGE_BATCH = 200  # builds deleted per retention run: a long backlog is worked off over several runs
_BUILD = names(BUILD_COLUMNS, "b.")  # every column of builds AS b
_EVENT = "event_id, phase, message, image_name, queue_position, code"


class BuildStore:
    """Reads and (queued) writes of the build record. Open with `BuildStore.open(url, ...)`."""

    def __init__(self, db: Database, *, timeout: float, url: str = "") -> None:
        self.db = db
        self.url = safe_url(url) if url else db.dialect.name
        self._timeout = timeout
        self.writer = BatchWriter(db, timeout=timeout)

    @classmethod
    async def open(cls, url: str, *, op_timeout: float) -> BuildStore:
        """Connect, migrate to head (StoreOpenError if impossible) and start the writer."""
        store = cls(await open_database(url, op_timeout=op_timeout), timeout=op_timeout, url=url)
        store.writer.start()
        return store

    async def aclose(self) -> None:
        await self.writer.aclose(grace=self._timeout)
        await self.db.aclose()

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.db.dialect.name

    # --- writes (queued; never wait for the database) ---

    def save_build(self, record: BuildRecord) -> None:
        self.writer.put(record)

    def add_event(self, build_id: str, event: BuildEvent, at: datetime | None = None) -> None:
        self.writer.put(EventWrite(build_id, event, at or datetime.now(UTC)))

    def add_requester(self, build_id: str, requester: str, created_at: datetime) -> None:
        """`requester` joined a build another replica runs (and writes): they see it in their list."""
        self.writer.put(RequesterWrite(build_id, requester, created_at))

    def touch_image(self, touch: ImageTouch) -> None:
        self.writer.put(touch)

    async def flush(self) -> None:
        await self.writer.flush()

    # --- leases (written at once, in a locked transaction: store/leases.py) ---

    async def claim(self, record: BuildRecord, *, ttl: float) -> str | None:
        """Take the lease of `record.image` for this build (recording it): None, or the id of the build
        another live replica runs of that image."""
        at = datetime.now(UTC)
        return await self._now("a build lease", lambda conn: leases.claim(conn, record, ttl=ttl, now=at))

    async def renew(self, owner: str, build_ids: Sequence[str], *, ttl: float) -> int:
        at = datetime.now(UTC)
        return await self._now(
            "lease renewal", lambda conn: leases.renew(conn, owner, build_ids, ttl=ttl, now=at)
        )

    async def release(self, image: str, build_id: str) -> None:
        await self._now("a build lease", lambda conn: leases.release(conn, image, build_id))

    async def request_cancel(self, build_id: str) -> bool:
        """Ask the replica running `build_id` to cancel it (it sees that when it renews its leases)."""
        return await self._now("a cancel request", lambda conn: leases.request_cancel(conn, build_id))

    async def cancel_requests(self, owner: str, build_ids: Sequence[str]) -> list[str]:
        return await self._read(
            "cancel requests", lambda conn: leases.cancel_requests(conn, owner, build_ids)
        )

    async def lease_of(self, build_id: str) -> Lease | None:
        return await self._read("a build lease", lambda conn: leases.lease_of(conn, build_id))

    async def expire(self, build_id: str) -> bool:
        """End `build_id` with a `failed` event if its replica stopped renewing its lease."""
        at = datetime.now(UTC)
        found = await self.lease_of(build_id)
        if found is None or found.lease_until > at:
            return False
        return await self._now("a build lease", lambda conn: leases.expire(conn, found, now=at))

    # --- admission places (store/places.py) ---

    async def take_places(
        self, ticket: str, wants: Sequence[tuple[str, int]], *, owner: str, ttl: float
    ) -> str | None:
        """A place under each (key, limit) for `ticket`, atomically across replicas: None, or the full key."""
        at = datetime.now(UTC)
        return await self._now(
            "admission", lambda conn: places.take(conn, ticket, wants, owner=owner, ttl=ttl, now=at)
        )

    async def hold_places(self, ticket: str, keys: Sequence[str], *, owner: str, ttl: float) -> None:
        """Places under `keys` for `ticket`, without a check (a build that runs already)."""
        at = datetime.now(UTC)
        await self._now(
            "admission", lambda conn: places.hold(conn, ticket, keys, owner=owner, ttl=ttl, now=at)
        )

    async def give_back_places(self, ticket: str) -> None:
        await self._now("admission", lambda conn: places.give_back(conn, ticket))

    async def renew_places(self, tickets: Sequence[str], *, ttl: float) -> int:
        at = datetime.now(UTC)
        return await self._now("admission", lambda conn: places.renew(conn, tickets, ttl=ttl, now=at))

    # --- the database, bounded in time ---

    async def _read(self, what: str, work: Callable[[Connection], Awaitable[T]]) -> T:
        """`work` on a connection outside any transaction."""
        return await self._run(what, work, write=False)

    async def _now(self, what: str, work: Callable[[Connection], Awaitable[T]]) -> T:
        """`work` in one transaction of its own, committed before returning."""
        return await self._run(what, work, write=True)

    async def _run(self, what: str, work: Callable[[Connection], Awaitable[T]], *, write: bool) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                async with self.db.transaction() if write else self.db.read() as conn:
                    return await work(conn)
        except (DatabaseError, OSError, TimeoutError) as e:
            log.warning("build store: read failed", extra={"what": what, "error": first_line(e)[:200]})
            raise StoreUnavailable(f"the build store did not answer ({what}); try again shortly") from None

    # --- reads ---

    async def get_build(self, build_id: str) -> BuildRecord | None:
        async def work(conn: Connection) -> BuildRecord | None:
            row = await conn.fetch_one(f"SELECT {_BUILD} FROM builds AS b WHERE b.id = :id", {"id": build_id})
            return None if row is None else _record(row)

        return await self._read("a build", work)

    async def is_requester(self, build_id: str, requester: str) -> bool:
        """`requester` asked for the build, on any replica (who joined elsewhere is only written here)."""

        async def work(conn: Connection) -> bool:
            found = await conn.fetch_one(
                "SELECT build_id FROM build_requesters WHERE build_id = :build_id AND requester = :requester "
                "LIMIT 1",
                {"build_id": build_id, "requester": requester},
            )
            return found is not None

        return await self._read("a build's requesters", work)

    def list_query(
        self,
        *,
        requester: str | None = None,
        status: str | None = None,
        cached: bool = False,
        limit: int = 100,
    ) -> tuple[str, dict[str, Any]]:
        """Newest first; `requester` None means everyone's (an admin's view). Each filter walks an index
        backwards (tests/store/test_scale.py reads the plans)."""
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if requester is None:
            sql, order = f"SELECT {_BUILD} FROM builds AS b", "b.created_at"
        else:
            sql = f"SELECT {_BUILD} FROM builds AS b JOIN build_requesters AS r ON r.build_id = b.id"
            order = "r.created_at"
            where.append("r.requester = :requester")
            params["requester"] = requester
            if not cached:
                where.append("r.cached = false")
        if not cached:
            where.append("b.cached = false")
        if status is not None:
            where.append("b.status = :status")
            params["status"] = status
        if where:
            sql += " WHERE " + " AND ".join(where)
        return f"{sql} ORDER BY {order} DESC LIMIT :limit", params

    async def list_builds(
        self,
        *,
        requester: str | None = None,
        status: str | None = None,
        cached: bool = False,
        limit: int = 100,
    ) -> list[BuildRecord]:
        sql, params = self.list_query(requester=requester, status=status, cached=cached, limit=limit)

        async def work(conn: Connection) -> list[BuildRecord]:
            return [_record(r) for r in await conn.fetch(sql, params)]

        return await self._read("the build list", work)

    async def active_builds(self, *, owner: str | None = None) -> list[BuildRecord]:
        """Builds recorded as queued or running (of one owner, or anyone's)."""
        sql = f"SELECT {_BUILD} FROM builds AS b WHERE b.status IN (:active) AND b.cached = false"
        params: dict[str, Any] = {"active": ACTIVE}
        if owner is not None:
            sql += " AND b.owner = :owner"
            params["owner"] = owner

        async def work(conn: Connection) -> list[BuildRecord]:
            return [_record(r) for r in await conn.fetch(sql + " ORDER BY b.created_at", params)]

        return await self._read("running builds", work)

    async def events(self, build_id: str, after: int = 0, limit: int = 5000) -> list[BuildEvent]:
        """Stored events of a build with id > `after`, in order (at most `limit`)."""

        async def work(conn: Connection) -> list[BuildEvent]:
            rows = await conn.fetch(
                f"SELECT {_EVENT} FROM events WHERE build_id = :build_id AND event_id > :after "
                "ORDER BY event_id LIMIT :limit",
                {"build_id": build_id, "after": after, "limit": limit},
            )
            return [_event(r) for r in rows]

        return await self._read("build events", work)

    async def log_text(self, build_id: str, page: int = 5000) -> AsyncIterator[str]:
        """The build's messages, in order, a page of events at a time."""
        after = 0
        while True:
            batch = await self.events(build_id, after, page)
            if not batch:
                return
            yield "".join(e.message for e in batch)
            after = batch[-1].id

    async def count_active(self, *, requester: str | None = None, spec_keys: Sequence[str] = ()) -> int:
        """Queued or running builds (of `requester`, and/or of one of `spec_keys`), whoever runs them."""
        sql = "SELECT count(*) FROM builds AS b"
        where = ["b.status IN (:active)", "b.cached = false"]
        params: dict[str, Any] = {"active": ACTIVE}
        if requester is not None:
            sql += " JOIN build_requesters AS r ON r.build_id = b.id"
            where.append("r.requester = :requester")
            params["requester"] = requester
        if spec_keys:
            where.append("b.spec_key IN (:spec_keys)")
            params["spec_keys"] = list(spec_keys)
        sql += " WHERE " + " AND ".join(where)

        async def work(conn: Connection) -> int:
            return int(await conn.fetch_value(sql, params))

        return await self._read("active builds", work)

    async def record_request(self, requester: str, at: float, window: float) -> int:
        """Note one request by `requester` at `at` (unix time); how many it made in the last `window` s."""

        async def work(conn: Connection) -> int:
            # Locked: two replicas' requests at the last place count each other (READ COMMITTED alone
            # lets both insert, count without the other, and pass).
            await conn.lock(f"rate:{requester}")
            await conn.execute(
                "INSERT INTO requests (requester, at) VALUES (:requester, :at)",
                {"requester": requester, "at": at},
            )
            n = await conn.fetch_value(
                "SELECT count(*) FROM requests WHERE requester = :requester AND at > :since",
                {"requester": requester, "since": at - window},
            )
            return int(n)

        return await self._now("the request rate", work)

    async def oldest_request(self, requester: str, since: float) -> float | None:
        async def work(conn: Connection) -> float | None:
            value = await conn.fetch_value(
                "SELECT min(at) FROM requests WHERE requester = :requester AND at > :since",
                {"requester": requester, "since": since},
            )
            return None if value is None else float(value)

        return await self._read("the request rate", work)

    # --- retention ---

    async def purge(
        self, older_than: timedelta, *, limit: int = PURGE_BATCH, now: datetime | None = None
    ) -> list[Purged]:
        """Delete up to `limit` builds finished before now - `older_than`, with their events."""
        at = now or datetime.now(UTC)
        cutoff = at - older_than

        async def work(conn: Connection) -> list[Purged]:
            rows = await conn.fetch(
                "SELECT id, log_path FROM builds WHERE finished_at < :cutoff "
                "ORDER BY finished_at LIMIT :limit",
                {"cutoff": cutoff, "limit": limit},
            )
            ids = [r["id"] for r in rows]
            if ids:
                await conn.execute("DELETE FROM events WHERE build_id IN (:ids)", {"ids": ids})
                await conn.execute("DELETE FROM build_requesters WHERE build_id IN (:ids)", {"ids": ids})
                await conn.execute("DELETE FROM builds WHERE id IN (:ids)", {"ids": ids})
            # Admission's request log only needs its last minute; places that ran out, none.
            await conn.execute("DELETE FROM requests WHERE at < :before", {"before": cutoff.timestamp()})
            await places.purge(conn, now=at)
            return [Purged(r["id"], r["log_path"]) for r in rows]

        return await self._now("the retention purge", work)


def _record(row: Row) -> BuildRecord:
    values = {k: row[k] for k in BuildRecord.__slots__ if k in row}
    values["requesters"] = tuple(values.get("requesters") or ())
    values["phase_times"] = dict(values.get("phase_times") or {})
    return BuildRecord(**values)


def _event(row: Row) -> BuildEvent:
    return BuildEvent(
        row["event_id"],
        Phase(row["phase"]),
        row["message"],
        row["image_name"],
        row["queue_position"],
        row["code"],
    )
