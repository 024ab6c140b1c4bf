"""list_refs over git:// : the daemon protocol on a raw socket, through the egress policy when given."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final, cast
from urllib.parse import urlsplit

from ...security.egress import EgressPolicy
from ...security.redaction import redact_url
from .protocol import RefsParser, RemoteRefs, pkt_line

__all__ = ["GIT_DAEMON_PORT", "list_refs"]

GIT_DAEMON_PORT: Final = 9418
# A flush instead of "want" lines (v0) or of a command (v2) tells upload-pack we are done: it exits cleanly.
END: Final = b"0000"


class _Reader(asyncio.Protocol):
    """Sends the request once connected and feeds what comes back to the parser; `finished` is set once
    the advertisement is complete or the connection ends (the parser then says what was missing).
    A protocol, not streams: no reader buffer and no task wake-up per chunk (this runs per build request)."""

    _transport: asyncio.Transport

    def __init__(self, request: bytes, parser: RefsParser) -> None:
        self._request = request
        self._parser = parser
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended = False  # the session's closing flush is sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(pkt_line(self._request))

    def data_received(self, data: bytes) -> None:
        if self.finished.done():
            return
        try:
            done = self._parser.feed(data)
            command = self._parser.take_request()  # v2: `ls-refs`, once the capabilities are read
            if command is not None:
                # ... and the flush that ends the session right behind it: upload-pack reads it once it
                # has answered, so no write is left for the end.
                self._transport.write(command + END)
                self.ended = True
            if done:
                self.finished.set_result(None)
        except Exception as e:  # malformed or hostile: the lookup's error
            self.finished.set_exception(e)

    def eof_received(self) -> bool | None:
        self._end(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    def _end(self, exc: Exception | None) -> None:
        if not self.finished.done():
            if exc is None:
                self.finished.set_result(None)
            else:
                self.finished.set_exception(exc)


async def list_refs(url: str, *, egress: EgressPolicy | None, prefixes: Sequence[str] = ()) -> RemoteRefs:
    """The refs `git daemon` at `url` has under `prefixes` (all of them if none; a daemon that only speaks
    protocol v0 advertises all anyway); the caller bounds the time this takes."""
    shown = redact_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or GIT_DAEMON_PORT
    # As git sends it: host as written (IPv6 keeps its brackets), port only when given.
    host_header = parts.netloc.rpartition("@")[2]
    parser = RefsParser(shown, smart_http=False, prefixes=prefixes)
    # After the host, git's "extra parameters": protocol v2, as git asks for it (a daemon older than
    # git 2.18 ignores them and answers in v0).
    request = f"git-upload-pack {parts.path}\0host={host_header}\0\0version=2\0".encode()

    def reader() -> _Reader:
        return _Reader(request, parser)

    if egress is not None:  # resolve, check, connect to the checked address
        transport, protocol = await egress.create_connection(reader, host, port)
    else:
        transport, protocol = await asyncio.get_running_loop().create_connection(reader, host, port)
    try:
        await protocol.finished
        refs = parser.result()
        if not protocol.ended:
            transport.write(END)
        transport.close()  # sends what is buffered first
        return refs
    finally:
        if not transport.is_closing():
            transport.abort()
