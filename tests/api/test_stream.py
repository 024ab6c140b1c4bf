"""The lean SSE response (api/stream.py): each send bounded, one timer per stream, nothing left behind.

The response is an ASGI app; these tests call it with their own `receive` and `send`, so a client that
reads fast, slowly, never, or leaves can be played exactly. (What it costs under a real 1,000-stream
fan-out is bench/fanout.py's job.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncGenerator, Callable, MutableMapping
from typing import Any

import pytest

from binder_service.api.stream import KEEPALIVE, EventStream


def _stream(messages: list[bytes], *, send_timeout: float = 30.0, keepalive: float = 30.0) -> EventStream:
    async def source(stopping: Callable[[], bool]) -> AsyncGenerator[bytes, None]:
        for i, message in enumerate(messages):
            if i % 100 == 0:
                await asyncio.sleep(0)  # as a live build: the loop runs between events
            yield message

    return EventStream(source, keepalive=keepalive, send_timeout=send_timeout, headers={})


class Client:
    """What the server hands the response: `receive` (a disconnect, when `leave()` is called) and a
    `send` that records every body and waits `delay(n)` seconds before it returns from the n-th one."""

    def __init__(self, delay: Callable[[int], float] = lambda n: 0.0) -> None:
        self.bodies: list[bytes] = []
        self.ended = False
        self._delay = delay
        self._left = asyncio.Event()

    async def receive(self) -> MutableMapping[str, Any]:
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        pause = self._delay(len(self.bodies))
        if pause:
            await asyncio.sleep(pause)
        self.bodies.append(message["body"])
        self.ended = not message.get("more_body", False)

    def leave(self) -> None:
        self._left.set()


def _scope() -> dict[str, Any]:
    return {"type": "http", "path": "/build/x", "state": {}}


@pytest.fixture
async def timers(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every timer the running loop is asked for (call_at; call_later goes through it)."""
    loop = asyncio.get_running_loop()
    asked: list[float] = []
    call_at = loop.call_at

    def counting(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        asked.append(when)
        return call_at(when, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)
    return asked


async def test_every_message_is_sent_with_one_timer_per_stream_not_one_per_message(
    timers: list[float],
) -> None:
    # A timer per send was ~100,000 live timer handles under a 1,000-stream fan-out (bench/fanout.py).
    messages = [b"data: %d\n\n" % i for i in range(2000)]
    client = Client()
    await _stream(messages)(_scope(), client.receive, client.send)
    assert client.bodies == [*messages, b""]
    assert client.ended
    assert len(timers) < 10  # the send bound, the watcher's keepalive wait


async def test_a_send_that_never_returns_ends_the_stream_after_the_send_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = asyncio.Event()

    async def source(stopping: Callable[[], bool]) -> AsyncGenerator[bytes, None]:
        try:
            for i in range(100):
                yield b"data: %d\n\n" % i
        finally:
            closed.set()

    client = Client(delay=lambda n: 3600.0 if n == 3 else 0.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.INFO, logger="binder_service.api.stream"):
        await EventStream(source, keepalive=30.0, send_timeout=0.3, headers={})(
            _scope(), client.receive, client.send
        )
    assert loop.time() - started >= 0.3
    assert len(client.bodies) == 3
    assert not client.ended
    assert closed.is_set()  # the source was closed, not left suspended
    assert "client stopped reading" in caplog.text
    await asyncio.sleep(0)  # the task is not left cancelled by the stream's own cancel


async def test_the_bound_is_per_send_so_a_slow_reader_still_gets_everything() -> None:
    # Four sends of 0.4 s each: 1.6 s in all, over the 1 s bound, none of them over it.
    messages = [b"data: %d\n\n" % i for i in range(4)]
    client = Client(delay=lambda n: 0.4 if n < 4 else 0.0)
    await _stream(messages, send_timeout=1.0)(_scope(), client.receive, client.send)
    assert client.bodies == [*messages, b""]


async def test_a_client_that_leaves_ends_the_stream_quietly() -> None:
    async def source(stopping: Callable[[], bool]) -> AsyncGenerator[bytes, None]:
        yield b"data: first\n\n"
        await asyncio.Event().wait()  # a build that says nothing more
        yield b"never"

    client = Client()
    run = asyncio.create_task(
        EventStream(source, keepalive=30.0, send_timeout=30.0, headers={})(
            _scope(), client.receive, client.send
        )
    )
    while not client.bodies:
        await asyncio.sleep(0.01)
    client.leave()
    await run
    assert client.bodies == [b"data: first\n\n"]
    assert not run.cancelled()


async def test_keepalive_comments_while_nothing_is_sent() -> None:
    async def source(stopping: Callable[[], bool]) -> AsyncGenerator[bytes, None]:
        await asyncio.sleep(0.35)
        yield b"data: late\n\n"

    client = Client()
    await EventStream(source, keepalive=0.1, send_timeout=30.0, headers={})(
        _scope(), client.receive, client.send
    )
    assert client.bodies[-2:] == [b"data: late\n\n", b""]
    assert KEEPALIVE in client.bodies[:-2]


async def test_a_finished_stream_is_freed_by_reference_counting_alone() -> None:
    # A reference cycle through the stream (e.g. a timer callback that re-arms itself) would keep its
    # response, its task and their frames alive until a full collection: after a fan-out, a thousand of
    # each, long enough to pin the allocator's arenas (bench/fanout.py: RSS after, +27 MB).
    gc.collect()
    gc.disable()
    try:
        stream = _stream([b"data: x\n\n"] * 10, send_timeout=0.5)
        # Two slow sends, each under the bound; the timer fires during the second and re-arms.
        client = Client(delay=lambda n: 0.3 if n in (2, 5) else 0.0)
        gone = weakref.ref(stream)
        task = asyncio.create_task(stream(_scope(), client.receive, client.send))
        task_gone = weakref.ref(task)
        del stream
        await task
        del task
        await asyncio.sleep(0.9)  # past the timer the stream had armed
        assert gone() is None
        assert task_gone() is None
    finally:
        gc.enable()
