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
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..deadline import LazyDeadline
from .release_memory import STREAMS

__all__ = ["KEEPALIVE", "EventStream", "Source"]

log = logging.getLogger(__name__)
KEEPALIVE = b":keepalive\n\n"  # BinderHub's exact comment line
# (stopping) -> messages: `stopping()` is true once the service began a graceful stop.
Source = Callable[[Callable[[], bool]], AsyncGenerator[bytes, None]]


class _Ending:
    """Why the request task was cancelled by its own stream (the client left, or stopped reading), and
    the bound on each send: `send_timeout`, on one lazily armed timer per stream (deadline.py), not a
    timer per message. (An object, not closures: a closure that re-arms itself is a reference cycle,
    and would keep the stream's task and response alive until a full collection.)"""

    __slots__ = ("_send", "_task", "reason")

    def __init__(self, task: asyncio.Task[Any], send_timeout: float) -> None:
        self._task: asyncio.Task[Any] | None = task
        self._send = LazyDeadline(task.get_loop(), send_timeout, lambda: self.end("stalled"))
        self.reason: str | None = None

    @property
    def sending_since(self) -> float | None:
        return self._send.since

    def end(self, reason: str) -> None:
        """Stop the request task (once) for `reason`."""
        if self.reason is None and self._task is not None:
            self.reason = reason
            self._task.cancel()

    def sending(self) -> None:
        self._send.start()

    def sent(self) -> None:
        self._send.stop()

    def close(self) -> None:
        self._send.close()
        self._task = None


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
        ending = _Ending(me, self._send_timeout)

        async def body(data: bytes, more: bool = True) -> None:
            ending.sending()
            try:
                await send({"type": "http.response.body", "body": data, "more_body": more})
            finally:
                ending.sent()

        async def watch() -> None:
            keepalive = {"type": "http.response.body", "body": KEEPALIVE, "more_body": True}
            while True:
                try:
                    async with asyncio.timeout(self._keepalive):
                        message: Message = await receive()
                except TimeoutError:
                    if ending.sending_since is None:  # data flows already otherwise
                        with contextlib.suppress(Exception):
                            async with asyncio.timeout(self._send_timeout):  # once per keepalive: cheap
                                await send(keepalive)
                    continue
                if message["type"] == "http.disconnect":
                    ending.end("gone")  # the source may be waiting for the next event: stop it now
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
            if ending.reason is None:
                raise
            me.uncancel()  # that cancel was ours: the request simply ends
            if ending.reason == "stalled":
                log.info("client stopped reading; stream abandoned", extra={"path": scope.get("path")})
        except TimeoutError:
            log.info("stream ended: its source timed out", extra={"path": scope.get("path")})
        finally:
            ending.close()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            STREAMS.closed()
