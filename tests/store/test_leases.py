"""Build leases (store/leases.py) on real SQLite and PostgreSQL: one claim wins, a dead owner's build ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from binder_service.builds.build import Build, BuildStatus
from binder_service.builds.recording import restore, stored_events
from binder_service.builds.replicas import mirror
from binder_service.events import BuildEvent, Phase
from binder_service.store import BuildStore
from binder_service.store.leases import OWNER_GONE
from tests.support.records import record


async def test_of_many_concurrent_claims_of_one_image_exactly_one_wins(db_url: str) -> None:
    stores = [await BuildStore.open(db_url, op_timeout=10.0) for _ in range(4)]
    try:
        now = datetime.now(UTC)
        claims = [
            store.claim(record(f"b{i}", owner=f"replica{i}", image="reg/one:1", created_at=now), ttl=30)
            for i, store in enumerate(stores)
        ]
        answers = await asyncio.gather(*claims)
        winners = [i for i, other in enumerate(answers) if other is None]
        assert len(winners) == 1, answers
        assert set(answers) == {None, f"b{winners[0]}"}  # every other claim joins the winner
        # The winner's record was written with its claim: a joiner can read it at once.
        found = await stores[1].get_build(f"b{winners[0]}")
        assert found is not None
        assert found.status == "running"
        # The owner claims again (a restart): still its own.
        again = record(f"b{winners[0]}", owner=f"replica{winners[0]}", image="reg/one:1", created_at=now)
        assert await stores[0].claim(again, ttl=30) is None
    finally:
        for store in stores:
            await store.aclose()


async def test_a_dead_owners_build_ends_failed_once_and_a_new_claim_takes_over(db_url: str) -> None:
    a, b = await BuildStore.open(db_url, op_timeout=10.0), await BuildStore.open(db_url, op_timeout=10.0)
    try:
        now = datetime.now(UTC)
        assert await a.claim(record("dead1", owner="a", image="reg/x:1", created_at=now), ttl=0.3) is None
        a.add_event("dead1", BuildEvent(1, Phase.WAITING, "Waiting\n"))
        a.add_event("dead1", BuildEvent(2, Phase.BUILDING, "Step 1\n"))
        await a.flush()
        assert await b.expire("dead1") is False  # its lease still runs
        assert await a.renew("a", ["dead1"], ttl=0.3) == 1  # one statement for all of a's leases
        assert await b.renew("b", ["dead1"], ttl=30) == 0  # only its owner renews it
        await asyncio.sleep(0.5)
        # Two replicas notice at once: one ends it, one event.
        ended = await asyncio.gather(b.expire("dead1"), a.expire("dead1"))
        assert sorted(ended) == [False, True]
        events = await b.events("dead1")
        assert [e.id for e in events] == [1, 2, 3]
        assert events[-1].phase is Phase.FAILED
        assert events[-1].code == OWNER_GONE
        gone = await b.get_build("dead1")
        assert gone is not None
        assert (gone.status, gone.error_code, gone.owner) == ("failed", OWNER_GONE, None)
        assert await b.lease_of("dead1") is None
        # The image is free: the next claim builds it.
        assert await b.claim(record("new1", owner="b", image="reg/x:1", created_at=now), ttl=30) is None
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_expired_lease_whose_last_event_is_stored_ends_as_that_event_says(db_url: str) -> None:
    # The owner stored `ready` but died before its record (and lease) said so: nothing is added.
    store = await BuildStore.open(db_url, op_timeout=10.0)
    try:
        now = datetime.now(UTC)
        assert await store.claim(record("r1", owner="a", image="reg/r:1", created_at=now), ttl=0.1) is None
        store.add_event("r1", BuildEvent(1, Phase.BUILDING, "Step 1\n"))
        store.add_event("r1", BuildEvent(2, Phase.READY, "Done!\n", image_name="reg/r:1"))
        await store.flush()
        await asyncio.sleep(0.3)
        assert await store.expire("r1") is True
        assert [e.phase for e in await store.events("r1")] == [Phase.BUILDING, Phase.READY]
        done = await store.get_build("r1")
        assert done is not None
        assert done.status == "ready"
    finally:
        await store.aclose()


async def test_a_joined_copy_follows_live_and_gets_the_dead_owners_last_event(db_url: str) -> None:
    owner, joiner = (
        await BuildStore.open(db_url, op_timeout=10.0),
        await BuildStore.open(db_url, op_timeout=10.0),
    )
    try:
        now = datetime.now(UTC)
        assert await owner.claim(record("m1", owner="a", image="reg/m:1", created_at=now), ttl=1.0) is None
        owner.add_event("m1", BuildEvent(1, Phase.WAITING, "Waiting\n"))
        await owner.flush()
        stored = await joiner.get_build("m1")
        assert stored is not None
        copy = restore(stored, await stored_events(joiner, "m1"), max_events=100)
        ready: list[bool] = []
        following = asyncio.create_task(
            mirror(copy, joiner, build_timeout=60, on_ready=lambda: ready.append(True), poll=0.05)
        )
        owner.add_event("m1", BuildEvent(2, Phase.BUILDING, "Step 1\n"))
        await owner.flush()
        seen = [e async for e in _until(copy, 2)]
        assert [e.id for e in seen] == [1, 2]  # live, with the owner's ids
        assert copy.status is BuildStatus.RUNNING
        # The owner never renews: within about a lease, the copy gets a last event and ends.
        await asyncio.wait_for(following, 30)
        assert copy.done
        assert copy.error_code == OWNER_GONE
        assert copy.events()[-1].code == OWNER_GONE
        assert copy.last_event_id == 3
        assert not ready
    finally:
        await owner.aclose()
        await joiner.aclose()


async def _until(build: Build, last: int) -> AsyncIterator[BuildEvent]:
    async for event in build.follow(0):
        yield event
        if event.id >= last:
            return
