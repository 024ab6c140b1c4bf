"""The build store: the durable record of builds, their events and the images they made.

Writes go through a `BatchWriter` (queued, batched, retried); reads go straight to the database with
a timeout and raise `StoreUnavailable` when it does not answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import StoreUnavailable
from ..events import BuildEvent, Phase
from . import leases, places
from .engine import open_engine, safe_url
from .leases import Lease
from .models import BUILD_REQUESTERS, BUILDS, EVENTS, REQUESTS
from .records import ACTIVE, BuildRecord, EventWrite, ImageTouch, Purged, RequesterWrite
from .writer import BatchWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
PURGE_BATCH = 200  # builds deleted per retention run: a long backlog is worked off over several runs
_B, _R, _E = BUILDS, BUILD_REQUESTERS, EVENTS


class BuildStore:
    """Reads and (queued) writes of the build record. Open with `BuildStore.open(url, ...)`."""

    def __init__(self, engine: AsyncEngine, *, timeout: float, url: str = "") -> None:
        self.engine = engine
        self.url = safe_url(url) if url else str(engine.url)
        self._timeout = timeout
        self.writer = BatchWriter(engine, timeout=timeout)

    @classmethod
    async def open(cls, url: str, *, op_timeout: float) -> BuildStore:
        """Connect, migrate to head (StoreOpenError if impossible) and start the writer."""
        store = cls(await open_engine(url, op_timeout=op_timeout), timeout=op_timeout, url=url)
        store.writer.start()
        return store

    async def aclose(self) -> None:
        await self.writer.aclose(grace=self._timeout)
        await self.engine.dispose()

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

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

    async def _now(self, what: str, work: Callable[[AsyncConnection], Any]) -> Any:
        """Run `work` in one transaction of its own, committed before returning."""

        async def committed(conn: AsyncConnection) -> Any:
            result = await work(conn)
            await conn.commit()
            return result

        return await self._read(what, committed)

    async def claim(self, record: BuildRecord, *, ttl: float) -> str | None:
        """Take the lease of `record.image` for this build (recording it): None, or the id of the build
        another live replica runs of that image."""
        at = datetime.now(UTC)
        other: str | None = await self._now(
            "a build lease", lambda conn: leases.claim(conn, record, ttl=ttl, now=at)
        )
        return other

    async def renew(self, owner: str, build_ids: Sequence[str], *, ttl: float) -> int:
        at = datetime.now(UTC)
        count: int = await self._now(
            "lease renewal", lambda conn: leases.renew(conn, owner, build_ids, ttl=ttl, now=at)
        )
        return count

    async def release(self, image: str, build_id: str) -> None:
        await self._now("a build lease", lambda conn: leases.release(conn, image, build_id))

    async def request_cancel(self, build_id: str) -> bool:
        """Ask the replica running `build_id` to cancel it (it sees that when it renews its leases)."""
        asked: bool = await self._now("a cancel request", lambda conn: leases.request_cancel(conn, build_id))
        return asked

    async def cancel_requests(self, owner: str, build_ids: Sequence[str]) -> list[str]:
        found: list[str] = await self._read(
            "cancel requests", lambda conn: leases.cancel_requests(conn, owner, build_ids)
        )
        return found

    async def lease_of(self, build_id: str) -> Lease | None:
        found: Lease | None = await self._read("a build lease", lambda conn: leases.lease_of(conn, build_id))
        return found

    async def expire(self, build_id: str) -> bool:
        """End `build_id` with a `failed` event if its replica stopped renewing its lease."""
        at = datetime.now(UTC)
        ended: bool = await self._now("a build lease", lambda conn: leases.expire(conn, build_id, now=at))
        return ended

    # --- admission places (store/places.py) ---

    async def take_places(
        self, ticket: str, wants: Sequence[tuple[str, int]], *, owner: str, ttl: float
    ) -> str | None:
        """A place under each (key, limit) for `ticket`, atomically across replicas: None, or the full key."""
        at = datetime.now(UTC)
        full: str | None = await self._now(
            "admission", lambda conn: places.take(conn, ticket, wants, owner=owner, ttl=ttl, now=at)
        )
        return full

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
        count: int = await self._now("admission", lambda conn: places.renew(conn, tickets, ttl=ttl, now=at))
        return count

    # --- reads ---

    async def _read(self, what: str, work: Callable[[AsyncConnection], Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                async with self.engine.connect() as conn:
                    return await work(conn)
        except (SQLAlchemyError, OSError, TimeoutError) as e:
            log.warning(
                "build store: read failed", extra={"what": what, "error": str(e).splitlines()[0][:200]}
            )
            raise StoreUnavailable(f"the build store did not answer ({what}); try again shortly") from None

    async def get_build(self, build_id: str) -> BuildRecord | None:
        async def work(conn: AsyncConnection) -> BuildRecord | None:
            row = (await conn.execute(select(_B).where(_B.c.id == build_id))).first()
            return None if row is None else _record(row._mapping)

        result: BuildRecord | None = await self._read("a build", work)
        return result

    async def is_requester(self, build_id: str, requester: str) -> bool:
        """`requester` asked for the build, on any replica (who joined elsewhere is only written here)."""

        async def work(conn: AsyncConnection) -> bool:
            query = select(_R.c.build_id).where(_R.c.build_id == build_id, _R.c.requester == requester)
            return (await conn.execute(query.limit(1))).first() is not None

        found: bool = await self._read("a build's requesters", work)
        return found

    def list_query(
        self,
        *,
        requester: str | None = None,
        status: str | None = None,
        cached: bool = False,
        limit: int = 100,
    ) -> Select[Any]:
        """Newest first; `requester` None means everyone's (an admin's view)."""
        if requester is None:
            query = select(_B).order_by(_B.c.created_at.desc())
        else:
            query = (
                select(_B)
                .join(_R, _R.c.build_id == _B.c.id)
                .where(_R.c.requester == requester)
                .order_by(_R.c.created_at.desc())
            )
            if not cached:
                query = query.where(_R.c.cached.is_(False))
        if not cached:
            query = query.where(_B.c.cached.is_(False))
        if status is not None:
            query = query.where(_B.c.status == status)
        return query.limit(limit)

    async def list_builds(
        self,
        *,
        requester: str | None = None,
        status: str | None = None,
        cached: bool = False,
        limit: int = 100,
    ) -> list[BuildRecord]:
        query = self.list_query(requester=requester, status=status, cached=cached, limit=limit)

        async def work(conn: AsyncConnection) -> list[BuildRecord]:
            return [_record(r._mapping) for r in (await conn.execute(query)).all()]

        result: list[BuildRecord] = await self._read("the build list", work)
        return result

    async def active_builds(self, *, owner: str | None = None) -> list[BuildRecord]:
        """Builds recorded as queued or running (of one owner, or anyone's)."""
        query = select(_B).where(_B.c.status.in_(ACTIVE), _B.c.cached.is_(False))
        if owner is not None:
            query = query.where(_B.c.owner == owner)

        async def work(conn: AsyncConnection) -> list[BuildRecord]:
            return [_record(r._mapping) for r in (await conn.execute(query.order_by(_B.c.created_at))).all()]

        result: list[BuildRecord] = await self._read("running builds", work)
        return result

    async def events(self, build_id: str, after: int = 0, limit: int = 5000) -> list[BuildEvent]:
        """Stored events of a build with id > `after`, in order (at most `limit`)."""
        query = (
            select(_E)
            .where(_E.c.build_id == build_id, _E.c.event_id > after)
            .order_by(_E.c.event_id)
            .limit(limit)
        )

        async def work(conn: AsyncConnection) -> list[BuildEvent]:
            return [_event(r._mapping) for r in (await conn.execute(query)).all()]

        result: list[BuildEvent] = await self._read("build events", work)
        return result

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
        query = select(func.count()).select_from(_B).where(_B.c.status.in_(ACTIVE), _B.c.cached.is_(False))
        if requester is not None:
            query = query.join(_R, _R.c.build_id == _B.c.id).where(_R.c.requester == requester)
        if spec_keys:
            query = query.where(_B.c.spec_key.in_(list(spec_keys)))

        async def work(conn: AsyncConnection) -> int:
            return int((await conn.execute(query)).scalar_one())

        result: int = await self._read("active builds", work)
        return result

    async def record_request(self, requester: str, at: float, window: float) -> int:
        """Note one request by `requester` at `at` (unix time); how many it made in the last `window` s."""

        async def work(conn: AsyncConnection) -> int:
            # Locked: two replicas' requests at the last place count each other (READ COMMITTED alone
            # lets both insert, count without the other, and pass).
            await leases.serialize(conn, f"rate:{requester}")
            await conn.execute(insert(REQUESTS), {"requester": requester, "at": at})
            t = REQUESTS
            n = (
                await conn.execute(
                    select(func.count())
                    .select_from(t)
                    .where(t.c.requester == requester, t.c.at > at - window)
                )
            ).scalar_one()
            await conn.commit()
            return int(n)

        result: int = await self._read("the request rate", work)
        return result

    async def oldest_request(self, requester: str, since: float) -> float | None:
        t = REQUESTS

        async def work(conn: AsyncConnection) -> float | None:
            value = (
                await conn.execute(select(func.min(t.c.at)).where(t.c.requester == requester, t.c.at > since))
            ).scalar_one()
            return None if value is None else float(value)

        result: float | None = await self._read("the request rate", work)
        return result

    # --- retention ---

    async def purge(
        self, older_than: timedelta, *, limit: int = PURGE_BATCH, now: datetime | None = None
    ) -> list[Purged]:
        """Delete up to `limit` builds finished before now - `older_than`, with their events."""
        cutoff = (now or datetime.now(UTC)) - older_than

        async def work(conn: AsyncConnection) -> list[Purged]:
            rows = (
                await conn.execute(
                    select(_B.c.id, _B.c.log_path)
                    .where(_B.c.finished_at < cutoff)
                    .order_by(_B.c.finished_at)
                    .limit(limit)
                )
            ).all()
            ids = [r.id for r in rows]
            if ids:
                await conn.execute(delete(_E).where(_E.c.build_id.in_(ids)))
                await conn.execute(delete(_R).where(_R.c.build_id.in_(ids)))
                await conn.execute(delete(_B).where(_B.c.id.in_(ids)))
            # Admission's request log only needs its last minute; places that ran out, none.
            rt = REQUESTS
            await conn.execute(delete(rt).where(rt.c.at < cutoff.timestamp()))
            await places.purge(conn, now=now or datetime.now(UTC))
            await conn.commit()
            return [Purged(r.id, r.log_path) for r in rows]

        result: list[Purged] = await self._read("the retention purge", work)
        return result


def _record(row: Any) -> BuildRecord:
    values = {k: row[k] for k in BuildRecord.__slots__ if k in row}
    values["requesters"] = tuple(values.get("requesters") or ())
    values["phase_times"] = dict(values.get("phase_times") or {})
    return BuildRecord(**values)


def _event(row: Any) -> BuildEvent:
    return BuildEvent(
        row["event_id"],
        Phase(row["phase"]),
        row["message"],
        row["image_name"],
        row["queue_position"],
        row["code"],
    )


def chunks(items: Iterable[T], size: int) -> Iterable[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
