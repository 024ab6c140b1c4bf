"""Build leases: one build per image across replicas, and a last word when the replica running it dies.

A replica about to build an image claims the image's lease row in one locked transaction (PostgreSQL:
an advisory lock on the image; SQLite: `BEGIN IMMEDIATE`), writing the build's record in the same
transaction: a second replica that claims it meanwhile finds a live lease of another owner and joins that
build (follows its stored events) instead of starting one. The owner renews the leases of its running
builds with one UPDATE every third of the lease; a lease that is not renewed in time means its replica is
gone, and the first replica to notice ends the build with a `failed` event saying so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import BuildOwnerGone
from .models import BUILDS, EVENTS, LEASES
from .records import ACTIVE, BuildRecord
from .writer import upsert

OWNER_GONE = BuildOwnerGone.code
_FINAL = ("ready", "failed")


@dataclass(frozen=True, slots=True)
class Lease:
    image: str
    build_id: str
    owner: str
    lease_until: datetime


def lock_key(name: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, stable across processes and releases."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def serialize(conn: AsyncConnection, *names: str) -> None:
    """Hold this transaction's locks on `names` until it commits: concurrent holders wait, in any replica.

    Must be the transaction's first statement (SQLite takes its one write lock with `BEGIN IMMEDIATE`;
    later readers of the same transaction then see every earlier writer's commit). PostgreSQL's are taken
    in one order, so two transactions wanting the same names never deadlock."""
    if conn.dialect.name == "postgresql":
        for key in sorted({lock_key(name) for name in names}):
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def claim(conn: AsyncConnection, record: BuildRecord, *, ttl: float, now: datetime) -> str | None:
    """Take the lease of `record.image` for `record` (and write the record): None; or the id of the build
    another live owner runs of that image (join it)."""
    owner = record.owner or ""
    await serialize(conn, f"lease:{record.image}")
    row = (await conn.execute(select(LEASES).where(LEASES.c.image == record.image))).first()
    if row is not None and row.build_id != record.id and row.owner != owner:
        if row.lease_until > now and await _active(conn, row.build_id):
            return str(row.build_id)
        if row.lease_until <= now:  # its replica died: say so to whoever follows it
            await _end(conn, row.build_id, now)
    values = {"image": record.image, "build_id": record.id, "owner": owner, "lease_until": _until(now, ttl)}
    stmt = upsert(conn, LEASES)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["image"], set_={k: stmt.excluded[k] for k in ("build_id", "owner", "lease_until")}
        ),
        values,
    )
    row_values = asdict(record)
    row_values["requesters"] = list(record.requesters)
    await conn.execute(upsert(conn, BUILDS).on_conflict_do_nothing(), row_values)
    return None


async def renew(
    conn: AsyncConnection, owner: str, build_ids: Sequence[str], *, ttl: float, now: datetime
) -> int:
    """Extend the leases `owner` holds of `build_ids` (not those an earlier process of the same owner left
    behind: they run out); how many it still holds."""
    result = await conn.execute(
        update(LEASES)
        .where(LEASES.c.owner == owner, LEASES.c.build_id.in_(list(build_ids)))
        .values(lease_until=_until(now, ttl))
    )
    return int(result.rowcount or 0)


async def request_cancel(conn: AsyncConnection, build_id: str) -> bool:
    """Ask the replica running `build_id` to cancel it; False when no replica holds its lease."""
    result = await conn.execute(
        update(LEASES).where(LEASES.c.build_id == build_id).values(cancel_requested=True)
    )
    return bool(result.rowcount)


async def cancel_requests(conn: AsyncConnection, owner: str, build_ids: Sequence[str]) -> list[str]:
    """Which of `owner`'s builds another replica asked to cancel."""
    query = select(LEASES.c.build_id).where(
        LEASES.c.owner == owner, LEASES.c.build_id.in_(list(build_ids)), LEASES.c.cancel_requested
    )
    return [row.build_id for row in await conn.execute(query)]


async def release(conn: AsyncConnection, image: str, build_id: str) -> None:
    await conn.execute(delete(LEASES).where(LEASES.c.image == image, LEASES.c.build_id == build_id))


async def lease_of(conn: AsyncConnection, build_id: str) -> Lease | None:
    row = (await conn.execute(select(LEASES).where(LEASES.c.build_id == build_id))).first()
    return None if row is None else Lease(row.image, row.build_id, row.owner, row.lease_until)


async def expire(conn: AsyncConnection, build_id: str, *, now: datetime) -> bool:
    """End `build_id` if its lease ran out (its replica is gone): True when this call ended it."""
    found = await lease_of(conn, build_id)
    if found is None or found.lease_until > now:
        return False
    await serialize(conn, f"lease:{found.image}")
    again = await lease_of(conn, build_id)
    if again is None or again.lease_until > now:
        return False  # renewed, or another replica ended it first
    await _end(conn, build_id, now)
    return True


async def _active(conn: AsyncConnection, build_id: str) -> bool:
    status = (await conn.execute(select(BUILDS.c.status).where(BUILDS.c.id == build_id))).scalar()
    return status is None or status in ACTIVE  # None: its record is being written with the claim


async def _end(conn: AsyncConnection, build_id: str, now: datetime) -> None:
    """Drop the lease of a build whose owner is gone; give it a `failed` last event unless it has one."""
    await conn.execute(delete(LEASES).where(LEASES.c.build_id == build_id))
    status = (await conn.execute(select(BUILDS.c.status).where(BUILDS.c.id == build_id))).scalar()
    if status is None or status not in ACTIVE:
        return
    last = (
        await conn.execute(
            select(EVENTS.c.event_id, EVENTS.c.phase)
            .where(EVENTS.c.build_id == build_id)
            .order_by(EVENTS.c.event_id.desc())
            .limit(1)
        )
    ).first()
    if last is not None and last.phase in _FINAL:
        # The owner stored its last event but died before its record said so.
        done = "ready" if last.phase == "ready" else "failed"
        await conn.execute(
            update(BUILDS)
            .where(BUILDS.c.id == build_id)
            .values(status=done, finished_at=now, owner=None, last_event_id=last.event_id)
        )
        return
    message = (
        "the binder-service replica running this build stopped answering (its lease ran out): "
        "the build is abandoned; ask again to build"
    )
    event_id = (last.event_id if last is not None else 0) + 1
    await conn.execute(
        insert(EVENTS),
        {
            "build_id": build_id,
            "event_id": event_id,
            "phase": "failed",
            "message": message + "\n",
            "code": OWNER_GONE,
            "created_at": now,
        },
    )
    await conn.execute(
        update(BUILDS)
        .where(BUILDS.c.id == build_id)
        .values(
            status="failed",
            error_code=OWNER_GONE,
            error_message=message,
            finished_at=now,
            owner=None,
            last_event_id=func.max(BUILDS.c.last_event_id, event_id)
            if conn.dialect.name == "sqlite"
            else func.greatest(BUILDS.c.last_event_id, event_id),
        )
    )


def _until(now: datetime, ttl: float) -> datetime:
    return now + timedelta(seconds=ttl)
