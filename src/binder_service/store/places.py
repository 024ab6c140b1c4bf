"""Admission places across replicas: a running build's places under per-user and per-repository limits.

Taking places is one transaction locked on their keys (store/leases.py's `serialize`): the live places
of each key are counted and the new ones written before anyone else may count, so two replicas admitting
the last place at the same instant cannot both succeed. A place is live while its replica renews it;
a replica that dies gives its places back when they run out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .leases import serialize
from .models import PLACES


async def take(
    conn: AsyncConnection,
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
    await serialize(conn, *(f"place:{key}" for key, _ in wants))
    for key, limit in wants:
        held = (
            await conn.execute(
                select(func.count())
                .select_from(PLACES)
                .where(PLACES.c.key == key, PLACES.c.lease_until > now, PLACES.c.ticket != ticket)
            )
        ).scalar_one()
        if held >= limit:
            return key
    until = now + timedelta(seconds=ttl)
    await conn.execute(
        insert(PLACES),
        [{"ticket": ticket, "key": key, "owner": owner, "lease_until": until} for key, _ in wants],
    )
    return None


async def hold(
    conn: AsyncConnection, ticket: str, keys: Sequence[str], *, owner: str, ttl: float, now: datetime
) -> None:
    """Places for a build that runs already (adopted after a restart), taken whatever the limits say:
    the other replicas count it from now on."""
    if keys:
        until = now + timedelta(seconds=ttl)
        await conn.execute(
            insert(PLACES),
            [{"ticket": ticket, "key": key, "owner": owner, "lease_until": until} for key in keys],
        )


async def give_back(conn: AsyncConnection, ticket: str) -> None:
    await conn.execute(delete(PLACES).where(PLACES.c.ticket == ticket))


async def renew(conn: AsyncConnection, tickets: Sequence[str], *, ttl: float, now: datetime) -> int:
    """Extend the places of `tickets` (those of this process: a dead one's run out)."""
    result = await conn.execute(
        update(PLACES)
        .where(PLACES.c.ticket.in_(list(tickets)))
        .values(lease_until=now + timedelta(seconds=ttl))
    )
    return int(result.rowcount or 0)


async def purge(conn: AsyncConnection, *, now: datetime) -> None:
    """Drop places that ran out (their replica is gone)."""
    await conn.execute(delete(PLACES).where(PLACES.c.lease_until <= now))
