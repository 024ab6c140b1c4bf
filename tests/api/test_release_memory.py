"""The heap is trimmed after a burst of streams, once their connections are gone too (release_memory.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from binder_service.api import release_memory
from binder_service.api.release_memory import ClosedConnections, StreamCount
from binder_service.settings import Settings
from tests.support.service import running_service
from tests.support.waiting import wait_until


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


async def test_every_burst_of_closed_connections_is_trimmed_once() -> None:
    # Keep-alive clients close their connections after the streams ended (and after that trim).
    trimmed: list[int] = []
    closed = ClosedConnections(burst=3, trim=trimmed.append)
    for _ in range(2):
        closed.closed()
    await asyncio.sleep(release_memory.TRIM_DELAY + 0.5)
    assert trimmed == []  # fewer than a burst
    for _ in range(5):
        closed.closed()
    assert trimmed == []  # not at once: what a connection holds is freed after it is lost
    await asyncio.sleep(release_memory.TRIM_DELAY + 0.5)
    assert trimmed == [0]  # one trim for all of them
    assert closed.closed_since_trim == 0


def test_the_server_counts_its_closed_connections(tmp_path: Path) -> None:
    before = release_memory.CONNECTIONS.closed_total
    settings = Settings(state_dir=tmp_path)
    with running_service(settings) as url:
        for _ in range(3):
            httpx.get(url + "versions", timeout=30).raise_for_status()  # a connection each
        wait_until(lambda: release_memory.CONNECTIONS.closed_total >= before + 3)
