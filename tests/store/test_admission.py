"""Admission across replicas: two services' admission components on one PostgreSQL (and SQLite, alone)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest

from binder_service.admission import Admission, Ticket
from binder_service.auth import Identity
from binder_service.errors import QuotaExceeded, TooManyBuilds, TooManyRequests
from binder_service.policy import SpecPolicy, SpecRule
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


async def test_replicas_see_each_others_running_builds(pg: Cluster) -> None:
    url = pg.create_database()
    a, b = await BuildStore.open(url, op_timeout=5.0), await BuildStore.open(url, op_timeout=5.0)
    try:
        fresh = datetime.now(UTC)  # running now (an old record of a dead replica is stale: below)
        a.save_build(record("x1", owner="a", spec_key="gh/org/big", image="reg/big:1", created_at=fresh))
        a.save_build(record("x2", owner="a", spec_key="gh/org/small", requesters=("bob",), created_at=fresh))
        a.save_build(record("x3", owner="a", status="ready", spec_key="gh/org/big", image="reg/big:0"))
        await a.flush()
        seen_by_b = await Admission(
            requests_per_minute=0, builds_per_user=1, store=b, owner="b", shared=True
        ).elsewhere()
        assert sorted(r.id for r in seen_by_b) == ["x1", "x2"]  # running ones, of the other replica
        assert Admission.user_builds("alice", seen_by_b) == 1
        rule = SpecRule(re.compile("^gh/org/big$"), quota=1)
        assert Admission.rule_builds(rule, seen_by_b, image="reg/big:2") == 1
        assert Admission.rule_builds(rule, seen_by_b, image="reg/big:1") == 0  # joining it takes no place
        # A dead replica's record that nobody adopted stops counting once its deadline is long past.
        late = Admission(
            requests_per_minute=0,
            builds_per_user=1,
            store=b,
            owner="b",
            shared=True,
            build_timeout=60,
            clock=lambda: fresh.timestamp() + 10 * 86400,
        )
        assert await late.elsewhere() == []
        own = Admission(requests_per_minute=0, builds_per_user=1, store=a, owner="a", shared=True)
        assert await own.elsewhere() == []  # its own builds it counts in memory
    finally:
        await a.aclose()
        await b.aclose()


async def test_alone_admission_counts_in_memory(store: BuildStore) -> None:
    admission = Admission(requests_per_minute=1, builds_per_user=2, store=store, owner="a", shared=False)
    assert not admission.shared
    await admission.check_rate(ALICE)
    with pytest.raises(TooManyRequests):
        await admission.check_rate(ALICE)
    assert await admission.elsewhere() == []
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
