"""Build leases: one build per image across replicas, and a last word when the replica running it dies.

A replica about to build an image claims the image's lease row in one locked transaction (PostgreSQL:
an advisory lock on the image; SQLite: the database's write lock, store/db/dialects.py), writing the
build's record in the same transaction: a second replica that claims it meanwhile finds a live lease of
another owner and joins that build (follows its stored events) instead of starting one. The owner renews
the leases of its running builds with one UPDATE every third of the lease; a lease that is not renewed in
time means its replica is gone, and the first replica to notice ends the build with a `failed` event
saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..errors import BuildOwnerGone
from .db import Connection
from .records import ACTIVE, BuildRecord
from .schema import BUILD_COLUMNS, build_row, names, params

OWNER_GONE = BuildOwnerGone.code
_FINAL = ("ready", "failed")
_CLAIM_LEASE = (
    "INSERT INTO build_leases (image, build_id, owner, lease_until, cancel_requested) "
    "VALUES (:image, :build_id, :owner, :lease_until, false) "
    "ON CONFLICT (image) DO UPDATE SET "
    "build_id = excluded.build_id, owner = excluded.owner, lease_until = excluded.lease_until"
)
_INSERT_BUILD = (
    f"INSERT INTO builds ({names(BUILD_COLUMNS)}) VALUES ({params(BUILD_COLUMNS)}) ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class Lease:
    image: str
    build_id: str
    owner: str
    lease_until: datetime


async def claim(conn: Connection, record: BuildRecord, *, ttl: float, now: datetime) -> str | None:
    """Take the lease of `record.image` for `record` (and write the record): None; or the id of the build
    another live owner runs of that image (join it)."""
    owner = record.owner or ""
    await conn.lock(f"lease:{record.image}")
    row = await conn.fetch_one(
        "SELECT build_id, owner, lease_until FROM build_leases WHERE image = :image", {"image": record.image}
    )
    if row is not None and row["build_id"] != record.id and row["owner"] != owner:
        if row["lease_until"] > now and await _active(conn, row["build_id"]):
            return str(row["build_id"])
        if row["lease_until"] <= now:  # its replica died: say so to whoever follows it
            await _end(conn, row["build_id"], now)
    await conn.execute(
        _CLAIM_LEASE,
        {"image": record.image, "build_id": record.id, "owner": owner, "lease_until": _until(now, ttl)},
    )
    await conn.execute(_INSERT_BUILD, build_row(record))
    return None


async def renew(conn: Connection, owner: str, build_ids: Sequence[str], *, ttl: float, now: datetime) -> int:
    """Extend the leases `owner` holds of `build_ids` (not those an earlier process of the same owner left
    behind: they run out); how many it still holds."""
    return await conn.execute(
        "UPDATE build_leases SET lease_until = :until WHERE owner = :owner AND build_id IN (:ids)",
        {"until": _until(now, ttl), "owner": owner, "ids": list(build_ids)},
    )


async def request_cancel(conn: Connection, build_id: str) -> bool:
    """Ask the replica running `build_id` to cancel it; False when no replica holds its lease."""
    changed = await conn.execute(
        "UPDATE build_leases SET cancel_requested = true WHERE build_id = :build_id", {"build_id": build_id}
    )
    return bool(changed)


async def cancel_requests(conn: Connection, owner: str, build_ids: Sequence[str]) -> list[str]:
    """Which of `owner`'s builds another replica asked to cancel."""
    rows = await conn.fetch(
        "SELECT build_id FROM build_leases "
        "WHERE owner = :owner AND build_id IN (:ids) AND cancel_requested = true",
        {"owner": owner, "ids": list(build_ids)},
    )
    return [row["build_id"] for row in rows]


async def release(conn: Connection, image: str, build_id: str) -> None:
    await conn.execute(
        "DELETE FROM build_leases WHERE image = :image AND build_id = :build_id",
        {"image": image, "build_id": build_id},
    )


async def lease_of(conn: Connection, build_id: str) -> Lease | None:
    row = await conn.fetch_one(
        "SELECT image, build_id, owner, lease_until FROM build_leases WHERE build_id = :build_id",
        {"build_id": build_id},
    )
    return None if row is None else Lease(row["image"], row["build_id"], row["owner"], row["lease_until"])


async def expire(conn: Connection, found: Lease, *, now: datetime) -> bool:
    """End the build of `found`, a lease that ran out when it was read (its replica is gone), unless it
    was renewed or ended since: True when this call ended it."""
    await conn.lock(f"lease:{found.image}")
    again = await lease_of(conn, found.build_id)
    if again is None or again.lease_until > now:
        return False  # renewed, or another replica ended it first
    await _end(conn, found.build_id, now)
    return True


async def _status(conn: Connection, build_id: str) -> str | None:
    found = await conn.fetch_value("SELECT status FROM builds WHERE id = :id", {"id": build_id})
    return None if found is None else str(found)


async def _active(conn: Connection, build_id: str) -> bool:
    status = await _status(conn, build_id)
    return status is None or status in ACTIVE  # None: its record is being written with the claim


async def _end(conn: Connection, build_id: str, now: datetime) -> None:
    """Drop the lease of a build whose owner is gone; give it a `failed` last event unless it has one."""
    await conn.execute("DELETE FROM build_leases WHERE build_id = :build_id", {"build_id": build_id})
    status = await _status(conn, build_id)
    if status is None or status not in ACTIVE:
        return
    last = await conn.fetch_one(
        "SELECT event_id, phase FROM events WHERE build_id = :build_id ORDER BY event_id DESC LIMIT 1",
        {"build_id": build_id},
    )
    if last is not None and last["phase"] in _FINAL:
        # The owner stored its last event but died before its record said so.
        await conn.execute(
            "UPDATE builds SET status = :status, finished_at = :now, owner = NULL, "
            "last_event_id = :event_id WHERE id = :id",
            {"status": last["phase"], "now": now, "event_id": last["event_id"], "id": build_id},
        )
        return
    message = (
        "the binder-service replica running this build stopped answering (its lease ran out): "
        "the build is abandoned; ask again to build"
    )
    event_id = (last["event_id"] if last is not None else 0) + 1
    await conn.execute(
        "INSERT INTO events (build_id, event_id, phase, message, code, created_at) "
        "VALUES (:build_id, :event_id, 'failed', :message, :code, :now)",
        {
            "build_id": build_id,
            "event_id": event_id,
            "message": message + "\n",
            "code": OWNER_GONE,
            "now": now,
        },
    )
    await conn.execute(
        "UPDATE builds SET status = 'failed', error_code = :code, error_message = :message, "
        "finished_at = :now, owner = NULL, "
        f"last_event_id = {conn.dialect.greatest}(last_event_id, :event_id) WHERE id = :id",
        {"code": OWNER_GONE, "message": message, "now": now, "event_id": event_id, "id": build_id},
    )


def _until(now: datetime, ttl: float) -> datetime:
    return now + timedelta(seconds=ttl)
