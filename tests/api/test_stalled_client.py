"""A client that stops reading is cut off hard after the send timeout; the build and other clients go on.

Real uvicorn (configured as `binder-service serve` configures it), real sockets; the executor is an
in-process one that prints a lot, fast, so the buffers between the service and a silent client fill.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import world
from binder_service.builds.executor import BuildJob, Emit
from binder_service.events import Phase
from binder_service.settings import Settings
from tests.support.service import running_service, sse_messages
from tests.support.waiting import wait_until

LINE = "x" * 2000 + "\n"


class ChattyExecutor:
    """Prints `lines` log lines as fast as it can, then waits for `release` before it succeeds."""

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.release = threading.Event()

    async def run(self, job: BuildJob, emit: Emit) -> None:
        for i in range(self.lines):
            emit(Phase.BUILDING, LINE)
            if i % 200 == 0:
                await asyncio.sleep(0)
        while not self.release.is_set():
            await asyncio.sleep(0.05)
        # The image the manager confirms: a real one, in the world's engine (no registry here).
        await asyncio.to_thread(world.docker, "tag", world.BUSYBOX_IMAGE, job.image_name)

    async def check(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _silent_client(url: str) -> socket.socket:
    """Asks for the stream and never reads a byte (a tiny receive buffer, so it fills at once)."""
    parts = httpx.URL(url)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((parts.host, parts.port or 80))
    head = f"GET {parts.raw_path.decode()} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    s.sendall(head.encode())
    return s


TCP_CLOSE = 7  # tcpi_state after a reset (a graceful close from the server would be CLOSE_WAIT, 8)


def _reset(s: socket.socket) -> bool:
    """The server aborted the connection (RST). Asked of the kernel: reading would make it a reader."""
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE


@pytest.mark.docker
def test_a_client_that_never_reads_is_aborted_and_nobody_else_notices(
    make_settings: Callable[..., Settings],
) -> None:
    chatty = ChattyExecutor(lines=8000)  # ~16 MB of log: far more than every buffer on the way
    settings = make_settings(send_timeout=1.0, registry_url="", max_events_per_build=20000)
    with running_service(settings, executor=chatty) as service:
        repo = f"https://127.0.0.1:1/r-{uuid.uuid4().hex[:8]}"  # an image no earlier run made
        r = httpx.post(f"{service}api/v1/builds", json={"repo": repo, "ref": "a" * 40})
        assert r.status_code == 201, r.text
        build = r.json()
        spec = f"{quote(repo, safe='')}/{'a' * 40}"
        silent_bh = _silent_client(f"{service}build/git/{spec}?build_only=true")
        silent_native = _silent_client(f"{service}api/v1/builds/{build['id']}/events")
        got: dict[str, Any] = {}
        reader = threading.Thread(
            target=lambda: got.update(events=sse_messages(f"{service}api/v1/builds/{build['id']}/events"))
        )
        reader.start()
        started = time.monotonic()
        wait_until(lambda: _reset(silent_bh) and _reset(silent_native), timeout=60, what="aborted")
        assert time.monotonic() - started >= 1.0  # not before the send timeout
        chatty.release.set()
        reader.join(120)
    events = got["events"]
    assert events[-1]["phase"] == "ready"  # the build, and the client that reads, were unaffected
    assert sum(e["message"] == LINE for e in events) == 8000
