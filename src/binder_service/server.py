"""How `binder-service serve` runs uvicorn: its HTTP parser's own refusals become JSON errors too.

uvicorn answers requests it cannot parse (a non-numeric Content-Length, raw non-ASCII bytes in the path,
an oversized head) itself, as `400 Invalid HTTP request received.` in text/plain, before the app sees
them. `HttpProtocol` keeps uvicorn's parser but answers those with the service's JSON error body.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .access_log import log_config
from .api.release_memory import CONNECTIONS
from .stall_guard import stall_guarded
from .stop_notice import StopNotice

__all__ = ["MAX_HEAD", "HttpProtocol", "server_config"]

# Request line + headers. Far above any real client's (cookies included), far below a memory problem.
MAX_HEAD: Final = 64 * 1024
# After refusing a request, read (and drop) what the client still sends for this long or this much, so
# that closing with unread data does not reset the connection before the client has read the answer.
LINGER_SECONDS: Final = 2.0
LINGER_BYTES: Final = 4 << 20


class _HeadTooLarge(Exception):
    pass


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with JSON refusals: `input_too_large` (413) for a head over MAX_HEAD,
    `invalid_request` (400) for anything else its parser refuses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = 0
        self._too_large = False
        self._lingering: asyncio.TimerHandle | None = None
        self._dropped = 0

    # --- counting the head (httptools turns a callback's exception into HttpParserCallbackError) -----

    def on_message_begin(self) -> None:
        self._head = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head += size
        if self._head > MAX_HEAD:
            self._too_large = True
            raise _HeadTooLarge

    # --- refusing ------------------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            status, code = 413, "input_too_large"
            message = f"request line and headers are over {MAX_HEAD} bytes"
        else:
            status, code = 400, "invalid_request"
            message = (
                "malformed HTTP request (e.g. a bad header, a non-numeric Content-Length "
                "or raw non-ASCII bytes in the path)"
            )
        body = json.dumps({"code": code, "message": message}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self._linger()

    def _linger(self) -> None:
        """Half-close, drop what still arrives, close at the client's EOF or after LINGER_*."""
        self.parser = None  # type: ignore[assignment]  # nothing more is parsed on this connection
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._lingering = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        super().data_received(data)

    def eof_received(self) -> None:
        if self._lingering is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lingering is not None:
            self._lingering.cancel()
        super().connection_lost(exc)
        CONNECTIONS.closed()  # a burst of them closed: their memory goes back to the system


class _Protocol(StopNotice, HttpProtocol):
    """What the service serves HTTP with: JSON refusals, and the app told when a graceful stop begins."""


def server_config(
    app: Any,
    *,
    host: str,
    port: int,
    send_timeout: float,
    shutdown_grace: float = 5.0,
    log_level: str = "info",
) -> uvicorn.Config:
    """The uvicorn configuration `binder-service serve` runs `app` with (tests start it the same way).

    A client that stops reading for `send_timeout` seconds has its connection aborted (stall_guard.py).
    On a graceful stop, open streams get `shutdown_grace` seconds to say their last word (stop_notice.py)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config(),  # the access log without credentials from URLs (access_log.py)
        proxy_headers=False,
        http=stall_guarded(_Protocol, send_timeout),
        ws="none",  # no WebSocket routes: the websockets package is never loaded (~1 MB, issue 16)
        lifespan="on",
        timeout_graceful_shutdown=max(1, math.ceil(shutdown_grace)),  # uvicorn takes whole seconds
    )
