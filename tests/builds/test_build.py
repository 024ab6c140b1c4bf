"""A build's event history: fan-out to watchers, replay after an id, bounded memory."""

from __future__ import annotations

import asyncio

from binder_service.builds.build import Build, BuildStatus
from binder_service.events import Phase
from tests.support.records import REPO


async def test_watchers_see_everything_live_and_late() -> None:
    b = Build(id="1", image_name="i:x", repo=REPO)
    b.emit(Phase.WAITING, "w\n")

    async def watch(after: int = 0) -> list[int]:
        return [e.id async for e in b.follow(after)]

    early = [asyncio.create_task(watch()) for _ in range(50)]
    await asyncio.sleep(0)
    for i in range(5):
        b.emit(Phase.BUILDING, f"line {i}\n")
        await asyncio.sleep(0)
    b.finish(BuildStatus.READY, b.emit(Phase.READY, "done\n", image_name="i:x"))
    results = await asyncio.gather(*early)
    assert all(r == [1, 2, 3, 4, 5, 6, 7] for r in results)
    assert await watch() == [1, 2, 3, 4, 5, 6, 7]
    assert await watch(after=4) == [5, 6, 7]
    assert await watch(after=99) == []


async def test_history_is_bounded_and_keeps_head_and_tail() -> None:
    b = Build(id="1", image_name="i:x", repo=REPO, max_events=100)
    for i in range(1000):
        b.emit(Phase.BUILDING, f"{i}\n")
    events = b.events()
    assert len(events) <= 100
    assert events[0].id == 1
    assert events[-1].id == 1000
    ids = [e.id for e in events]
    assert ids == sorted(ids)
    # replay after a trimmed id continues with the oldest kept event after it
    assert b.events(after=500)[0].id > 500


async def test_failed_finish_records_the_error() -> None:
    b = Build(id="1", image_name="i:x", repo=REPO)
    b.finish(BuildStatus.FAILED, b.emit(Phase.FAILED, "boom\n", code="build_failed"))
    assert (b.error_code, b.error_message, b.done) == ("build_failed", "boom", True)
