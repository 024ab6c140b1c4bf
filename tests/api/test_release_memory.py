"""The heap is trimmed after a burst of streams, once their connections are gone too (release_memory.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import httpx
import pytest

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


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.mark.parametrize("kind", ["streams", "connections"])
async def test_the_garbage_a_burst_left_in_cycles_is_collected_before_the_trim(kind: str) -> None:
    # Objects in a reference cycle wait for the collector's next full pass; the trim cannot give back
    # the pages they hold (issue 16: ~12 MB after 1,000 subscribers). So the trim collects first.
    gc.disable()  # no automatic pass may do it for us
    try:
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        alive_at_trim: list[bool] = []

        def trim(_: int) -> None:
            alive_at_trim.append(ref() is not None)

        if kind == "streams":
            streams = StreamCount(burst=1, trim=trim)
            streams.opened()
            streams.closed()
        else:
            ClosedConnections(burst=1, trim=trim).closed()
        assert ref() is not None  # the cycle is still there
        await asyncio.sleep(release_memory.TRIM_DELAY + 0.5)
        assert alive_at_trim == [False]
    finally:
        gc.enable()
