"""Loopback sockets for tests: a free port, and a listener that never answers (the "unreachable host").

The one home of these helpers; tests send traffic only to loopback, so an unreachable upstream is a
closed loopback port (refused at once) or a `Blackhole` (accepted by the kernel, never answered).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (closed: connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Blackhole:
    """A TCP listener that never accepts: connections complete in the kernel, then nothing answers."""

    def __init__(self, backlog: int = 64) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(backlog)
        self.host = "127.0.0.1"
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextlib.contextmanager
def blackhole() -> Iterator[tuple[str, int]]:
    """`with blackhole() as (host, port):` a `Blackhole` for the block."""
    with Blackhole() as hole:
        yield hole.host, hole.port
