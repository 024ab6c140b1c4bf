"""The build store against real databases: a SQLite file and a PostgreSQL server (each test runs on both)."""

from __future__ import annotations

from datetime import timedelta

from binder_service.events import BuildEvent, Phase
from binder_service.store import BuildRecord, BuildStore, ImageTouch
from tests.support.records import T0, record


async def test_a_build_and_its_events_round_trip(store: BuildStore) -> None:
    store.save_build(record("b1", spec_key="git/x", pid=123, log_path="/x/b1.log", deadline=T0))
    for i in range(1, 6):
        store.add_event("b1", BuildEvent(i, Phase.BUILDING, f"line {i}\n"))
    done = record(
        "b1",
        status="failed",
        error_code="build_failed",
        error_message="boom",
        started_at=T0 + timedelta(seconds=1),
        finished_at=T0 + timedelta(seconds=9),
        phase_times={"building": (T0 + timedelta(seconds=2)).isoformat()},
        last_event_id=6,
    )
    store.save_build(done)
    store.add_event("b1", BuildEvent(6, Phase.FAILED, "boom\n", code="build_failed"))
    await store.flush()

    got = await store.get_build("b1")
    assert got == done  # the latest snapshot, times back as aware UTC
    assert got is not None
    assert got.finished_at is not None
    assert got.finished_at.tzinfo is not None
    assert [e.id for e in await store.events("b1", after=3)] == [4, 5, 6]
    assert (await store.events("b1", after=5))[0] == BuildEvent(
        6, Phase.FAILED, "boom\n", code="build_failed"
    )
    text = "".join([chunk async for chunk in store.log_text("b1", page=2)])
    assert text == "line 1\nline 2\nline 3\nline 4\nline 5\nboom\n"
    assert await store.get_build("nope") is None


async def test_writes_are_idempotent(store: BuildStore) -> None:
    # A batch retried after an ambiguous failure (committed, but the answer was lost) writes nothing twice.
    store.save_build(record("b1"))
    event = BuildEvent(1, Phase.WAITING, "once\n")
    store.add_event("b1", event)
    store.add_event("b1", event)
    await store.flush()
    store.save_build(record("b1", requesters=("alice", "bob")))
    store.add_event("b1", event)
    await store.flush()
    assert await store.events("b1") == [event]
    assert [b.id for b in await store.list_builds(requester="bob")] == ["b1"]


async def test_list_is_newest_first_and_per_user(store: BuildStore) -> None:
    store.save_build(record("old", created_at=T0, status="ready", finished_at=T0))
    store.save_build(record("mid", created_at=T0 + timedelta(seconds=1), requesters=("bob",)))
    store.save_build(record("new", created_at=T0 + timedelta(seconds=2), requesters=("alice", "bob")))
    store.save_build(record("hit", created_at=T0 + timedelta(seconds=3), cached=True, status="ready"))
    await store.flush()

    def ids(builds: list[BuildRecord]) -> list[str]:
        return [b.id for b in builds]

    assert ids(await store.list_builds()) == ["new", "mid", "old"]
    assert ids(await store.list_builds(cached=True)) == ["hit", "new", "mid", "old"]
    assert ids(await store.list_builds(requester="alice")) == ["new", "old"]
    assert ids(await store.list_builds(requester="alice", cached=True)) == ["hit", "new", "old"]
    assert ids(await store.list_builds(requester="bob", status="running")) == ["new", "mid"]
    assert ids(await store.list_builds(status="ready")) == ["old"]
    assert ids(await store.list_builds(limit=1)) == ["new"]
    assert ids(await store.list_builds(requester="carol")) == []
    assert ids(await store.active_builds()) == ["mid", "new"]


async def test_active_counts_and_request_rate(store: BuildStore) -> None:
    store.save_build(record("a", spec_key="gh/org/one"))
    store.save_build(record("b", spec_key="gh/org/two", requesters=("alice", "bob")))
    store.save_build(record("c", spec_key="gh/org/one", status="ready", finished_at=T0))
    await store.flush()
    assert await store.count_active(requester="alice") == 2
    assert await store.count_active(requester="bob") == 1
    assert await store.count_active(spec_keys=["gh/org/one"]) == 1
    assert await store.count_active() == 2
    assert [await store.record_request("alice", 1000.0 + i, 60) for i in range(3)] == [1, 2, 3]
    assert await store.record_request("alice", 1061.5, 60) == 2  # 1000 and 1001 left the window
    assert await store.oldest_request("alice", since=1061.5 - 60) == 1002.0
    assert await store.record_request("bob", 1061.5, 60) == 1


async def test_images_remember_requests_and_builds(store: BuildStore) -> None:
    store.touch_image(ImageTouch("reg/a:1", "gh", "org-a", T0, "alice", built=True))
    store.touch_image(ImageTouch("reg/a:1", "gh", "org-a", T0 + timedelta(hours=1), "bob"))
    await store.flush()
    store.touch_image(ImageTouch("reg/a:1", "gh", "org-a", T0 + timedelta(hours=2), "alice"))
    await store.flush()
    async with store.db.read() as conn:
        (row,) = await conn.fetch("SELECT built_at, last_requested_at, requesters FROM images")
    assert row["built_at"] == T0
    assert row["last_requested_at"] == T0 + timedelta(hours=2)
    assert row["requesters"] == ["bob", "alice"]  # most recent last


async def test_retention_purges_old_finished_builds_in_bounded_runs(store: BuildStore) -> None:
    now = T0 + timedelta(days=30)
    for i in range(5):
        store.save_build(
            record(f"old{i}", status="ready", finished_at=T0 + timedelta(minutes=i), log_path=f"/l/{i}")
        )
        store.add_event(f"old{i}", BuildEvent(1, Phase.READY, "done\n"))
    store.save_build(record("recent", status="ready", finished_at=now - timedelta(hours=1)))
    store.save_build(record("running", created_at=T0))  # never purged while it runs
    await store.flush()
    first = await store.purge(timedelta(days=7), limit=3, now=now)
    assert [p.id for p in first] == ["old0", "old1", "old2"]  # oldest first, at most `limit`
    assert [p.log_path for p in first] == ["/l/0", "/l/1", "/l/2"]
    second = await store.purge(timedelta(days=7), limit=3, now=now)
    assert [p.id for p in second] == ["old3", "old4"]
    assert await store.purge(timedelta(days=7), limit=3, now=now) == []
    assert await store.events("old0") == []
    assert {b.id for b in await store.list_builds()} == {"recent", "running"}
