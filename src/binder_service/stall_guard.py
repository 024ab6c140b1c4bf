"""Connections whose client stopped reading are aborted, not left to hold a socket and its buffers.

A client that never reads fills the kernel's buffers, then uvicorn's, and asyncio pauses writing. A
graceful close would wait behind those full buffers for as long as the client likes (a file descriptor
and megabytes of kernel memory each: a cheap way to exhaust the service). So a connection that stays
paused for longer than the send timeout is aborted (RST): nothing of it is left, in the process or in the
kernel, and the
build and every other client go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any, TypeVar

from .deadline import LazyDeadline

__all__ = ["StallGuard", "stall_guarded"]

log = logging.getLogger(__name__)
P = TypeVar("P", bound=asyncio.Protocol)
WRITE_BUFFER_HIGH = 16 * 1024


class StallGuard(asyncio.Protocol):
    """Mixin for uvicorn's HTTP protocol classes (which set `self.transport` and `self.loop`)."""

    stall_timeout: float = 30.0
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stall: LazyDeadline | None = None  # made at the first pause (the loop is set by then)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if isinstance(transport, asyncio.WriteTransport):
            # asyncio buffers up to 64 KiB per connection before it pauses a writer; with a thousand
            # subscribers on one build that is 64 MB of copies of the same events. The kernel's socket
            # buffer is the buffer; ours only needs to hold a message or two.
            transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    # A small write buffer pauses a busy connection many times a second: one lazily armed timer per
    # connection, not one per pause (deadline.py).

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = LazyDeadline(self.loop, self.stall_timeout, self._abort_stalled)
        self._stall.start()

    def resume_writing(self) -> None:
        if self._stall is not None:
            self._stall.stop()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stall is not None:
            self._stall.close()
            self._stall = None
        super().connection_lost(exc)

    def _abort_stalled(self) -> None:
        peer = self.transport.get_extra_info("peername")
        log.info("client stopped reading; connection aborted", extra={"peer": str(peer)})
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: closing sends a reset and drops the unsent data at once. A plain close would leave
            # the kernel trying to deliver megabytes to a client that does not read.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


def stall_guarded(protocol: type[P], timeout: float) -> type[P]:
    """`protocol` with a StallGuard of `timeout` seconds."""
    name = f"StallGuarded{protocol.__name__}"
    guarded: type[P] = type(name, (StallGuard, protocol), {"stall_timeout": timeout})
    return guarded
