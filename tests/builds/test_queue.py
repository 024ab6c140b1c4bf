"""The FIFO build queue: slots, positions, cancellation while waiting."""

from __future__ import annotations

import asyncio

from binder_service.builds.build import Build
from binder_service.builds.queue import BuildQueue
from tests.support.records import REPO


def build(n: int) -> Build:
    return Build(id=str(n), image_name=f"img{n}:x", repo=REPO)


async def test_positions_move_up_and_slots_pass_in_order() -> None:
    queue = BuildQueue(1)
    builds = [build(i) for i in range(4)]
    await queue.acquire(builds[0])
    waiters = [asyncio.create_task(queue.acquire(b)) for b in builds[1:]]
    await asyncio.sleep(0)
    assert [b.queue_position for b in builds[1:]] == [1, 2, 3]
    assert queue.waiting == 3

    waiters[1].cancel()  # the second in line gives up
    await asyncio.sleep(0)
    assert builds[3].queue_position == 2

    queue.release()
    await asyncio.sleep(0)
    assert waiters[0].done()
    assert builds[3].queue_position == 1
    assert [e.queue_position for e in builds[3].events()] == [3, 2, 1]
    queue.release()
    await asyncio.sleep(0)
    assert waiters[2].done()
    queue.release()
    assert (queue.running, queue.waiting) == (0, 0)


async def test_free_slots_are_taken_at_once() -> None:
    queue = BuildQueue(2)
    await queue.acquire(build(1))
    await queue.acquire(build(2))
    assert queue.running == 2
    assert build(1).queue_position is None
