"""Server-Sent Events responses: one build followed live, keepalive comments while idle, a last word always.

Every message is encoded once per event and shared by all its subscribers (`BuildEvent.*_sse`). On a
graceful stop every open stream gets a last message before it closes: BinderHub's clients a `failed`
event with code `service_stopping` (they stop there), native clients a `reconnect` event (no `id:`, so
their `Last-Event-ID` still points at the last event they had).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..builds import Build
from ..errors import BinderError, ServiceStopping
from ..events import BuildEvent, Phase, sse_message
from ..settings import Settings

log = logging.getLogger(__name__)
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_STOPPING = ServiceStopping(
    "binder-service is stopping: this stream ends here; ask again to follow the build"
)
RECONNECT_MS = 2000  # how soon a native client should reconnect after `reconnect`

Wire = Literal["binderhub", "native"]


class _Stream(EventSourceResponse):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # The client stopped reading: its stream is given up (and its connection aborted by the
            # server's stall guard); the build goes on. Not an error of ours.
            log.info("client stopped reading; stream abandoned", extra={"path": scope.get("path")})


class _Keepalive(ServerSentEvent):
    def encode(self) -> bytes:
        return b":keepalive\n\n"  # BinderHub's exact comment line


def _farewell(wire: Wire, build: Build) -> bytes:
    if wire == "binderhub":
        return sse_message(failed_payload(_STOPPING) | {"status_code": _STOPPING.status})
    data = {"phase": build.phase.value, "message": _STOPPING.message + "\n", "code": _STOPPING.code}
    return f"event: reconnect\nretry: {RECONNECT_MS}\ndata: {json.dumps(data)}\n\n".encode()


def _encoder(wire: Wire) -> Callable[[BuildEvent], bytes]:
    return BuildEvent.binderhub_sse if wire == "binderhub" else BuildEvent.native_sse


def event_stream(build: Build, *, wire: Wire, settings: Settings, after: int = 0) -> EventSourceResponse:
    """`build`'s events after `after`, live, to its end (or to the service's stop, with a last word)."""
    shutdown = anyio.Event()  # set by sse-starlette when the server begins a graceful stop
    encode = _encoder(wire)

    async def body() -> AsyncIterator[bytes]:
        waker = asyncio.create_task(_wake_on(shutdown, build))
        try:
            final = False
            async for event in build.follow(after, stopped=shutdown.is_set):
                final = event.phase.final
                yield encode(event)
            if shutdown.is_set() and not final:
                yield _farewell(wire, build)
        finally:
            waker.cancel()

    return _Stream(
        body(),
        ping=settings.keepalive_interval,
        ping_message_factory=_Keepalive,
        send_timeout=settings.send_timeout,
        headers=_HEADERS,
        shutdown_event=shutdown,
        shutdown_grace_period=settings.shutdown_grace,
    )


async def _wake_on(shutdown: anyio.Event, build: Build) -> None:
    await shutdown.wait()
    build.wake()  # a follower waiting for the next event sees the stop at once


def failed_payload(error: BinderError) -> dict[str, Any]:
    """A `failed` message for an error raised before a build existed (BinderHub's shape)."""
    return {"phase": Phase.FAILED.value, "message": error.message.rstrip("\n") + "\n", "code": error.code}


def complete_stream(payloads: list[dict[str, Any]]) -> Response:
    """A finished event stream as one plain response: no keepalive task, no disconnect watcher."""
    body = "".join(f"data: {json.dumps(p)}\n\n" for p in payloads)
    return Response(body, media_type="text/event-stream", headers=_HEADERS)
