"""A lean Server-Sent Events response: what one subscriber of a build costs is kept small.

One build fans out to many subscribers (a class of a thousand students asks for one image). sse-starlette's
`EventSourceResponse` runs a task group of four tasks per connection (stream, ping, disconnect and exit
listeners): about 46 KB of Python objects per subscriber, measured (bench/fanout.py). This response does
the same job with the request's own task plus one watcher, and sends messages that were encoded once for
all subscribers:

- the request task iterates the source and sends each message, every send bounded by `send_timeout`
  (a client that stops reading is given up, and the server's stall guard aborts its connection);
- the watcher waits for the client to leave (ending the stream at once) and, while nothing is sent,
  writes a keepalive comment every `keepalive` seconds;
- a graceful stop is seen through `scope["state"]["stopping"]` (set by the server's protocol when
  uvicorn begins shutting down; see server.py), which the source checks to say its last word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Mapping

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .release_memory import STREAMS

__all__ = ["KEEPALIVE", "EventStream", "Source"]

log = logging.getLogger(__name__)
KEEPALIVE = b":keepalive\n\n"  # BinderHub's exact comment line
# (stopping) -> messages: `stopping()` is true once the service began a graceful stop.
Source = Callable[[Callable[[], bool]], AsyncGenerator[bytes, None]]


class EventStream(Response):
    """A response streaming `source`'s messages as `text/event-stream` (a Response, so FastAPI passes
    it through as it is)."""

    media_type = "text/event-stream"

    def __init__(
        self, source: Source, *, keepalive: float, send_timeout: float, headers: Mapping[str, str]
    ) -> None:
        # Not Response.__init__: it would render a body and a Content-Length of 0.
        self.status_code = 200
        self.background = None
        self._source = source
        self._keepalive = keepalive
        self._send_timeout = send_timeout
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state") or {}
        stopping: asyncio.Event | None = state.get("stopping")
        is_stopping = stopping.is_set if stopping is not None else (lambda: False)
        me = asyncio.current_task()
        assert me is not None
        sending = False
        gone = False

        async def body(data: bytes, more: bool = True) -> None:
            nonlocal sending
            sending = True
            try:
                async with asyncio.timeout(self._send_timeout):
                    await send({"type": "http.response.body", "body": data, "more_body": more})
            finally:
                sending = False

        async def watch() -> None:
            nonlocal gone
            while True:
                try:
                    async with asyncio.timeout(self._keepalive):
                        message: Message = await receive()
                except TimeoutError:
                    if not sending:  # data flows already otherwise
                        with contextlib.suppress(Exception):
                            await body(KEEPALIVE)
                    continue
                if message["type"] == "http.disconnect":
                    gone = True
                    me.cancel()  # the source may be waiting for the next event: stop it now
                    return

        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        watcher = asyncio.create_task(watch())
        STREAMS.opened()
        try:
            async with contextlib.aclosing(self._source(is_stopping)) as messages:
                async for message in messages:
                    await body(message)
            await body(b"", more=False)
        except asyncio.CancelledError:
            if not gone:
                raise
            me.uncancel()  # the client left: that cancel was ours, the request simply ends
        except TimeoutError:
            log.info("client stopped reading; stream abandoned", extra={"path": scope.get("path")})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            STREAMS.closed()
