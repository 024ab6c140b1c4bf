"""The heap is trimmed after a burst of streams, once their connections are gone too (release_memory.py)."""

from __future__ import annotations

import asyncio

from binder_service.api import release_memory
from binder_service.api.release_memory import StreamCount


async def test_a_burst_is_trimmed_once_shortly_after_its_last_stream_ends() -> None:
    trimmed: list[int] = []
    count = StreamCount(burst=3, trim=trimmed.append)
    for _ in range(3):
        count.opened()
    for _ in range(3):
        count.closed()
    # Not at once: the last streams' connections are freed by the server after their responses end.
    assert trimmed == []
    await asyncio.sleep(release_memory.TRIM_DELAY + 0.5)
    assert trimmed == [0]
    assert count.trims == 1


async def test_a_few_streams_are_not_a_burst() -> None:
    trimmed: list[int] = []
    count = StreamCount(burst=3, trim=trimmed.append)
    for _ in range(2):
        count.opened()
        count.closed()
    await asyncio.sleep(release_memory.TRIM_DELAY + 0.5)
    assert trimmed == []
