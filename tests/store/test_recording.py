"""The manager's side of the store: builds read back, streams from the store, adoption's bookkeeping."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from binder_service.builds.build import Build, BuildStatus
from binder_service.builds.durable import BuildFiles
from binder_service.builds.queue import BuildQueue
from binder_service.builds.recording import (
    Recorder,
    follow_stored,
    log_events_seen,
    phase_of,
    remove_logs,
    restore,
    snapshot,
    stored_events,
)
from binder_service.events import BuildEvent, Phase
from binder_service.providers import ResolvedRepo
from binder_service.store import BuildStore, Purged
from binder_service.store.leases import OWNER_GONE
from tests.support.records import record

REPO = ResolvedRepo("git", "https://example.org/r.git", "main", "c" * 40, "example.org-r")


def _build(store: BuildStore, build_id: str = "b1") -> Build:
    build = Build(id=build_id, image_name="reg/img:1", repo=REPO, requester="alice", requesters={"alice"})
    build.recorder = Recorder(store, owner="me")
    build.recorder.changed(build)
    return build


async def test_a_build_reads_back_as_it_was(store: BuildStore) -> None:
    build = _build(store)
    build.emit(Phase.WAITING, "waiting\n")
    build.emit(Phase.BUILDING, "Step 1\n")
    failed = build.emit(Phase.FAILED, "boom\n", code="build_failed")
    build.finish(BuildStatus.FAILED, failed)
    await store.flush()
    record = await store.get_build("b1")
    assert record is not None
    assert record == snapshot(build, owner="me")
    assert record.owner is None  # finished: nobody needs to adopt it
    assert set(record.phase_times) == {"waiting", "building", "failed"}
    back = restore(record, [], max_events=100)
    assert (back.status, back.phase, back.last_event_id) == (BuildStatus.FAILED, Phase.FAILED, 3)
    assert (back.error_code, back.error_message, back.requesters) == ("build_failed", "boom", {"alice"})
    full = restore(record, await stored_events(store, "b1"), max_events=100)
    assert [e.message for e in full.events()] == ["waiting\n", "Step 1\n", "boom\n"]
    assert full.emit(Phase.WAITING, "next\n").id == 4  # ids go on after the stored ones


async def test_the_phase_of_a_running_record_is_its_latest(store: BuildStore) -> None:
    build = _build(store)
    build.status = BuildStatus.RUNNING
    build.emit(Phase.FETCHING, "f\n")
    build.emit(Phase.PUSHING, "p\n")
    assert phase_of(snapshot(build, owner="me")) is Phase.PUSHING


async def test_a_stream_from_the_store_follows_a_build_another_process_runs(store: BuildStore) -> None:
    build = _build(store)
    build.status = BuildStatus.RUNNING
    build.recorder.changed(build)  # type: ignore[union-attr]
    build.emit(Phase.BUILDING, "one\n")
    await store.flush()
    got: list[BuildEvent] = []

    async def watch() -> None:
        async for event in follow_stored(store, "b1", 0, poll=0.01):
            got.append(event)

    watcher = asyncio.create_task(watch())
    while not got:
        await asyncio.sleep(0.01)
    build.emit(Phase.BUILDING, "two\n")
    ready = build.emit(Phase.READY, "done\n", image_name="reg/img:1")
    build.finish(BuildStatus.READY, ready)
    await store.flush()
    await watcher
    assert [e.message for e in got] == ["one\n", "two\n", "done\n"]
    assert [e.id for e in got] == [1, 2, 3]
    resumed = [e.id async for e in follow_stored(store, "b1", 2)]  # Last-Event-ID: 2
    assert resumed == [3]


async def test_a_stream_from_the_store_ends_with_build_owner_gone_once_the_owners_lease_runs_out(
    db_url: str,
) -> None:
    owner, here = (
        await BuildStore.open(db_url, op_timeout=10.0),
        await BuildStore.open(db_url, op_timeout=10.0),
    )
    try:
        lease = 0.5  # seconds: BINDER_SERVICE_BUILD_LEASE, short
        started = record("g1", owner="dead-soon", image="reg/g:1", created_at=datetime.now(UTC))
        assert await owner.claim(started, ttl=lease) is None
        owner.add_event("g1", BuildEvent(1, Phase.BUILDING, "Step 1\n"))
        await owner.flush()
        got: list[BuildEvent] = []

        async def watch() -> None:  # no build_timeout of its own to fall back on: an hour
            async for event in follow_stored(here, "g1", 0, poll=0.05, build_timeout=3600):
                got.append(event)

        watcher = asyncio.create_task(watch())
        # While the owner renews, the stream waits, however many leases go by.
        for _ in range(8):
            await asyncio.sleep(lease / 4)
            assert await owner.renew("dead-soon", ["g1"], ttl=lease) == 1
        assert not watcher.done()
        owner.add_event("g1", BuildEvent(2, Phase.BUILDING, "Step 2\n"))
        await owner.flush()
        # The owner stops renewing (it died): once the lease has run out the stream ends, with the event
        # every follower gets, not when the record would be stale (hours later). The bound only
        # guards against a hang.
        await asyncio.wait_for(watcher, 60)
        assert [(e.id, e.phase) for e in got] == [(1, Phase.BUILDING), (2, Phase.BUILDING), (3, Phase.FAILED)]
        assert got[-1].code == OWNER_GONE
        ended = await here.get_build("g1")
        assert ended is not None
        assert (ended.status, ended.error_code) == ("failed", OWNER_GONE)
        assert await here.lease_of("g1") is None  # the image is free for the next request
    finally:
        await owner.aclose()
        await here.aclose()


def test_events_the_log_produced_leave_out_the_managers_own() -> None:
    events = [
        BuildEvent(1, Phase.WAITING, "w\n"),
        BuildEvent(2, Phase.FETCHING, "Fetching\n"),
        BuildEvent(3, Phase.BUILDING, "Step 1\n"),
        BuildEvent(4, Phase.BUILDING, "Reusing layers of reg/img:0\n"),
        BuildEvent(5, Phase.BUILDING, "Step 2\n"),
    ]
    assert log_events_seen(events, base=2) == 2


async def test_adopted_builds_take_slots_beyond_the_limit_and_give_those_back_first() -> None:
    queue = BuildQueue(1)
    queue.take()
    queue.take()  # two adopted builds with one slot
    waiting = Build(id="w", image_name="i", repo=REPO)
    waiter = asyncio.create_task(queue.acquire(waiting))
    await asyncio.sleep(0)
    queue.release()  # the first adopted one ends: still one running, the waiter keeps waiting
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.release()  # the second ends: the slot goes to the waiter
    await asyncio.wait_for(waiter, 5)
    assert queue.running == 1


async def test_purged_builds_lose_their_log_files(tmp_path: Path) -> None:
    files = BuildFiles.for_build(tmp_path, "old")
    files.create()
    await remove_logs([Purged("old", str(files.log)), Purged("k8s", None)])
    assert not files.dir.exists()


def test_a_corrupt_store_stops_serve_with_one_clear_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "binder-service.sqlite").write_bytes(b"garbage" * 1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_SERVICE_", "JUPYTERHUB_"))}
    env["BINDER_SERVICE_STATE_DIR"] = str(state)
    result = subprocess.run(
        [sys.executable, "-m", "binder_service.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "cannot open the build store" in result.stderr
    assert "corrupt or not SQLite" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_cached_path_writes_an_image_once_a_minute_per_requester(store: BuildStore) -> None:
    now = [1000.0]
    recorder = Recorder(store, owner="me", clock=lambda: now[0])
    alice = Build(id="c1", image_name="reg/img:1", repo=REPO, requester="alice", cached=True)
    bob = Build(id="c2", image_name="reg/img:1", repo=REPO, requester="bob", cached=True)
    before = store.writer.backlog
    recorder.image(alice, built=False)
    recorder.image(alice, built=False)  # the same minute: nothing new to write
    recorder.image(bob, built=False)  # someone else: written
    assert store.writer.backlog - before == 2
    now[0] += 61
    recorder.image(alice, built=False)
    recorder.image(alice, built=True)  # a build always is
    assert store.writer.backlog - before == 4
    await store.flush()
