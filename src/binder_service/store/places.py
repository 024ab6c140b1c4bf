"""Admission places across replicas: a running build's places under per-user and per-repository limits.

Taking places is one transaction locked on their keys (`Connection.lock`, store/db/): the live places
of each key are counted and the new ones written before anyone else may count, so two replicas admitting
the last place at the same instant cannot both succeed. A place is live while its replica renews it;
a replica that dies gives its places back when they run out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from .db import Connection

_INSERT = (
    'INSERT INTO admission_places (ticket, "key", owner, lease_until) VALUES (:ticket, :key, :owner, :until)'
)


async def take(
    conn: Connection,
    ticket: str,
    wants: Sequence[tuple[str, int]],
    *,
    owner: str,
    ttl: float,
    now: datetime,
) -> str | None:
    """One place under each (key, limit) of `wants` for `ticket`: None, or the first key that is full
    (then nothing is taken)."""
    if not wants:
        return None
    await conn.lock(*(f"place:{key}" for key, _ in wants))
    for key, limit in wants:
        held = await conn.fetch_value(
            'SELECT count(*) FROM admission_places WHERE "key" = :key AND lease_until > :now '
            "AND ticket != :ticket",
            {"key": key, "now": now, "ticket": ticket},
        )
        if held >= limit:
            return key
    until = now + timedelta(seconds=ttl)
    await conn.execute_many(
        _INSERT, [{"ticket": ticket, "key": key, "owner": owner, "until": until} for key, _ in wants]
    )
    return None


async def hold(
    conn: Connection, ticket: str, keys: Sequence[str], *, owner: str, ttl: float, now: datetime
) -> None:
    """Places for a build that runs already (adopted after a restart), taken whatever the limits say:
    the other replicas count it from now on."""
    if keys:
        until = now + timedelta(seconds=ttl)
        await conn.execute_many(
            _INSERT, [{"ticket": ticket, "key": key, "owner": owner, "until": until} for key in keys]
        )


async def give_back(conn: Connection, ticket: str) -> None:
    await conn.execute("DELETE FROM admission_places WHERE ticket = :ticket", {"ticket": ticket})


async def renew(conn: Connection, tickets: Sequence[str], *, ttl: float, now: datetime) -> int:
    """Extend the places of `tickets` (those of this process: a dead one's run out)."""
    return await conn.execute(
        "UPDATE admission_places SET lease_until = :until WHERE ticket IN (:tickets)",
        {"until": now + timedelta(seconds=ttl), "tickets": list(tickets)},
    )


async def purge(conn: Connection, *, now: datetime) -> None:
    """Drop places that ran out (their replica is gone)."""
    await conn.execute("DELETE FROM admission_places WHERE lease_until <= :now", {"now": now})
