"""The stall guard (stall_guard.py): a connection paused for the whole timeout is aborted, with one timer
per connection however often it pauses. Real loopback sockets; the client never reads."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from binder_service.stall_guard import stall_guarded

TIMEOUT = 0.3


class _Plain(asyncio.Protocol):
    """The little of uvicorn's protocols the guard relies on: `loop` and `transport` attributes."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


Guarded = stall_guarded(_Plain, TIMEOUT)


@pytest.fixture
async def connection() -> AsyncIterator[tuple[Any, socket.socket]]:
    """(server-side guarded protocol, client socket that never reads)."""
    loop = asyncio.get_running_loop()
    made: asyncio.Queue[Any] = asyncio.Queue()

    def factory() -> Any:
        protocol = Guarded()
        made.put_nowait(protocol)
        return protocol

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", port))
    protocol = await made.get()
    try:
        yield protocol, client
    finally:
        client.close()
        server.close()
        await server.wait_closed()


async def test_pausing_often_arms_one_timer(
    connection: tuple[Any, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A timer per pause was, with 16 KiB write buffers, ~100,000 live timers under a fan-out.
    protocol, _client = connection
    asked: list[float] = []  # timers the guard asked for (its callbacks are its deadline's)
    call_at = protocol.loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(callback, "__self__", None)
        if owner is not None and owner is protocol._stall:
            asked.append(when)
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(protocol.loop, "call_at", counting)
    for _ in range(1000):
        protocol.pause_writing()
        protocol.resume_writing()
    assert len(asked) == 1
    await asyncio.sleep(TIMEOUT * 1.5)  # the timer fires, sees writing again, and is not re-armed
    assert len(asked) == 1
    assert not protocol.lost.is_set()


async def test_a_connection_paused_for_the_timeout_since_its_last_pause_is_aborted(
    connection: tuple[Any, socket.socket],
) -> None:
    protocol, client = connection
    loop = protocol.loop
    protocol.pause_writing()
    await asyncio.sleep(TIMEOUT / 2)
    protocol.resume_writing()
    protocol.pause_writing()  # paused again: the timeout counts from here
    last_pause = loop.time()
    await asyncio.sleep(TIMEOUT * 0.75)  # the first pause's deadline has passed
    assert not protocol.lost.is_set()
    await asyncio.wait_for(protocol.lost.wait(), 30)
    assert loop.time() - last_pause >= TIMEOUT
    with pytest.raises(ConnectionResetError):  # aborted: a reset, not a graceful close
        await loop.sock_recv(client, 1)
