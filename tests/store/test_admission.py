"""Admission across replicas: two services' admission components on one PostgreSQL (and SQLite, alone)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from binder_service.admission import Admission, Ticket
from binder_service.auth import Identity
from binder_service.errors import QuotaExceeded, TooManyBuilds, TooManyRequests
from binder_service.policy import SpecPolicy
from binder_service.store import BuildStore
from tests.support.clock import FakeClock
from tests.support.postgres import Cluster
from tests.support.records import record

ALICE = Identity(name="alice", kind="user")
ADMIN = Identity(name="root", kind="user", admin=True)


async def test_replicas_share_the_request_rate(pg: Cluster) -> None:
    url = pg.create_database()
    a, b = await BuildStore.open(url, op_timeout=5.0), await BuildStore.open(url, op_timeout=5.0)
    clock = FakeClock(1_000_000.0)
    try:
        one = Admission(
            requests_per_minute=3, builds_per_user=0, store=a, owner="a", shared=True, clock=clock
        )
        two = Admission(
            requests_per_minute=3, builds_per_user=0, store=b, owner="b", shared=True, clock=clock
        )
        await one.check_rate(ALICE)
        await two.check_rate(ALICE)
        await one.check_rate(ALICE)
        with pytest.raises(
            TooManyRequests, match=r"more than 3 build requests in a minute; try again in \d+s"
        ):
            await two.check_rate(ALICE)  # the fourth, on the other replica
        await two.check_rate(ADMIN)  # admins are never limited
        await two.check_rate(Identity(name="bob", kind="user"))  # per user
        clock.now += 61
        await two.check_rate(ALICE)  # the window moved on
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_dead_replicas_builds_stop_counting_when_its_places_run_out(pg: Cluster) -> None:
    """The store's places are the one count across replicas: a dead replica's build records, which
    say `running` until someone ends them, are not counted a second time beside them."""
    url = pg.create_database()
    stores, (dead, alive) = await _replicas(
        url, 2, requests_per_minute=0, builds_per_user=2, lease_seconds=0.6
    )
    try:
        await dead.admit(ALICE, spec_key="gh/x/1", image="reg/x:1")
        # Its record, as the replica's recorder writes it; nobody ends it (no one follows it).
        stores[0].save_build(
            record("d1", owner="replica0", spec_key="gh/x/1", image="reg/x:1", created_at=datetime.now(UTC))
        )
        await stores[0].flush()
        await dead.aclose()  # stops renewing, as a killed replica does
        await asyncio.sleep(0.8)  # past its lease: its place ran out
        # Alice runs nothing now: exactly her 2 places, on the live replica.
        await alive.admit(ALICE, spec_key="gh/x/2", image="reg/x:2")
        await alive.admit(ALICE, spec_key="gh/x/3", image="reg/x:3")
        with pytest.raises(TooManyBuilds):
            await alive.admit(ALICE, spec_key="gh/x/4", image="reg/x:4")
    finally:
        await alive.aclose()
        for s in stores:
            await s.aclose()


async def test_a_build_held_after_a_restart_counts_on_every_replica_once(pg: Cluster) -> None:
    url = pg.create_database()
    rule = {"pattern": "^gh/org/", "quota": 1}
    stores, (a, b) = await _replicas(
        url, 2, requests_per_minute=0, builds_per_user=2, policy=SpecPolicy(spec_config=[rule])
    )
    try:
        # Replica a adopted Alice's running build of gh/org/big (no check: it runs already).
        held = a.hold_for("gh/org/big", ["alice"])
        stores[0].save_build(
            record(
                "h1", owner="replica0", spec_key="gh/org/big", image="reg/big:1", created_at=datetime.now(UTC)
            )
        )
        await stores[0].flush()
        await a.aclose()  # its places are written (the background write is awaited)
        # Replica b counts it once: one more place for Alice, none under the full quota.
        await b.admit(ALICE, spec_key="gh/other/1", image="reg/o:1")
        with pytest.raises(TooManyBuilds):
            await b.admit(ALICE, spec_key="gh/other/2", image="reg/o:2")
        with pytest.raises(QuotaExceeded):
            await b.admit(Identity(name="bob", kind="user"), spec_key="gh/org/small", image="reg/s:1")
        a.release(held)  # the adopted build ends: its places are free on every replica
        stores[0].save_build(
            record(
                "h1",
                owner=None,
                status="ready",
                spec_key="gh/org/big",
                image="reg/big:1",
                created_at=datetime.now(UTC),
            )
        )
        await stores[0].flush()
        await a.aclose()
        await b.admit(Identity(name="bob", kind="user"), spec_key="gh/org/small", image="reg/s:1")
        await b.admit(ALICE, spec_key="gh/other/2", image="reg/o:2")
    finally:
        for r in (a, b):
            await r.aclose()
        for s in stores:
            await s.aclose()


async def test_alone_admission_counts_in_memory(store: BuildStore) -> None:
    admission = Admission(requests_per_minute=1, builds_per_user=2, store=store, owner="a", shared=False)
    assert not admission.shared
    await admission.check_rate(ALICE)
    with pytest.raises(TooManyRequests):
        await admission.check_rate(ALICE)
    assert admission.builds_limit(ALICE) == 2
    assert admission.builds_limit(ADMIN) == 0


async def _replicas(url: str, n: int, **options: object) -> tuple[list[BuildStore], list[Admission]]:
    stores = [await BuildStore.open(url, op_timeout=10.0) for _ in range(n)]
    admissions = [
        Admission(store=s, owner=f"replica{i}", shared=True, **options)  # type: ignore[arg-type]
        for i, s in enumerate(stores)
    ]
    return stores, admissions


async def test_replicas_admitting_the_last_places_at_once_admit_exactly_the_limit(pg: Cluster) -> None:
    url = pg.create_database()
    rule = {"pattern": "^gh/org/", "quota": 3}
    stores, replicas = await _replicas(
        url, 4, requests_per_minute=0, builds_per_user=2, policy=SpecPolicy(spec_config=[rule])
    )
    try:
        # Alice's builds: 4 replicas x 3 requests at the same instant, 2 places.
        tries = [
            r.admit(ALICE, spec_key=f"gh/other/{i}-{j}", image=f"reg/a{i}{j}:1")
            for i, r in enumerate(replicas)
            for j in range(3)
        ]
        results = await asyncio.gather(*tries, return_exceptions=True)
        admitted = [t for t in results if isinstance(t, Ticket)]
        assert len(admitted) == 2, results
        assert all(isinstance(t, TooManyBuilds) for t in results if not isinstance(t, Ticket))
        # A rule's quota: 8 users' first builds under it at once, 3 places.
        users = [Identity(name=f"u{k}", kind="user") for k in range(8)]
        tries = [
            replicas[k % 4].admit(u, spec_key=f"gh/org/r{k}", image=f"reg/r{k}:1")
            for k, u in enumerate(users)
        ]
        results = await asyncio.gather(*tries, return_exceptions=True)
        quota = [t for t in results if isinstance(t, Ticket)]
        assert len(quota) == 3, results
        assert all(isinstance(t, QuotaExceeded) for t in results if not isinstance(t, Ticket))
        # A build ends: its place is free again, on any replica.
        owner = next(r for r in replicas if admitted[0].id in r._shared)
        owner.release(admitted[0])
        await owner.aclose()
        await replicas[3].admit(ALICE, spec_key="gh/other/again", image="reg/again:1")
        with pytest.raises(TooManyBuilds):
            await replicas[2].admit(ALICE, spec_key="gh/other/more", image="reg/more:1")
    finally:
        for r in replicas:
            await r.aclose()
        for s in stores:
            await s.aclose()


async def test_a_dead_replicas_places_run_out(pg: Cluster) -> None:
    url = pg.create_database()
    stores, (dead, alive) = await _replicas(
        url, 2, requests_per_minute=0, builds_per_user=1, lease_seconds=0.6
    )
    try:
        await dead.admit(ALICE, spec_key="gh/x/1", image="reg/x:1")
        await dead.aclose()  # stops renewing, as a killed replica does
        with pytest.raises(TooManyBuilds):
            await alive.admit(ALICE, spec_key="gh/x/2", image="reg/x:2")
        await asyncio.sleep(0.8)
        await alive.admit(ALICE, spec_key="gh/x/2", image="reg/x:2")
        # Its own places it renews: still held after more than a lease.
        await asyncio.sleep(0.8)
        with pytest.raises(TooManyBuilds):
            await alive.admit(ALICE, spec_key="gh/x/3", image="reg/x:3")
    finally:
        await alive.aclose()
        for s in stores:
            await s.aclose()


async def test_replicas_at_the_last_request_of_the_rate_admit_exactly_the_rate(pg: Cluster) -> None:
    url = pg.create_database()
    stores, replicas = await _replicas(url, 4, requests_per_minute=5, builds_per_user=0)
    try:
        results = await asyncio.gather(
            *(r.check_rate(ALICE) for r in replicas for _ in range(4)), return_exceptions=True
        )
        assert results.count(None) == 5, results
        assert all(isinstance(x, TooManyRequests) for x in results if x is not None)
    finally:
        for s in stores:
            await s.aclose()
