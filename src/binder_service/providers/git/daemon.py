"""list_refs over git:// : the daemon protocol on a raw socket, through the egress policy when given."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final
from urllib.parse import urlsplit

from ...security.egress import EgressPolicy
from ...security.redaction import redact_url
from .protocol import RefsParser, RemoteRefs, pkt_line

__all__ = ["GIT_DAEMON_PORT", "list_refs"]

GIT_DAEMON_PORT: Final = 9418


async def list_refs(url: str, *, egress: EgressPolicy | None) -> RemoteRefs:
    """The refs `git daemon` at `url` advertises; the caller bounds the time this takes."""
    shown = redact_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or GIT_DAEMON_PORT
    # As git sends it: host as written (IPv6 keeps its brackets), port only when given.
    host_header = parts.netloc.rpartition("@")[2]
    request = f"git-upload-pack {parts.path}\0host={host_header}\0".encode()
    if egress is not None:  # resolve, check, connect to the checked address
        reader, writer = await egress.open_connection(host, port)
    else:
        reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(pkt_line(request))
        await writer.drain()
        parser = RefsParser(shown, smart_http=False)
        while not parser.done:
            data = await reader.read(1 << 16)
            if not data:
                break
            parser.feed(data)
        refs = parser.result()
        # A flush instead of "want" lines tells upload-pack we are done, so it exits cleanly.
        writer.write(b"0000")
        await writer.drain()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return refs
    finally:
        if not writer.is_closing():
            writer.transport.abort()
