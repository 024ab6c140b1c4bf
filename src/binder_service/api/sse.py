"""Server-Sent Events responses: one build followed live, keepalive comments while idle, a last word always.

Every message is encoded once per event and shared by all its subscribers (`BuildEvent.*_sse`). On a
graceful stop every open stream gets a last message before it closes: BinderHub's clients a `failed`
event with code `service_stopping` (they stop there), native clients a `reconnect` event (no `id:`, so
their `Last-Event-ID` still points at the last event they had).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal

from starlette.responses import Response

from ..builds import Build
from ..errors import BinderError, ServiceStopping
from ..events import BuildEvent, Phase, sse_message
from ..settings import Settings
from .stream import EventStream

log = logging.getLogger(__name__)
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_STOPPING = ServiceStopping(
    "binder-service is stopping: this stream ends here; ask again to follow the build"
)
RECONNECT_MS = 2000  # how soon a native client should reconnect after `reconnect`

Wire = Literal["binderhub", "native"]


def _farewell(wire: Wire, build: Build) -> bytes:
    if wire == "binderhub":
        return sse_message(failed_payload(_STOPPING) | {"status_code": _STOPPING.status})
    data = {"phase": build.phase.value, "message": _STOPPING.message + "\n", "code": _STOPPING.code}
    return f"event: reconnect\nretry: {RECONNECT_MS}\ndata: {json.dumps(data)}\n\n".encode()


def _encoder(wire: Wire) -> Callable[[BuildEvent], bytes]:
    return BuildEvent.binderhub_sse if wire == "binderhub" else BuildEvent.native_sse


Follow = Callable[[int, Callable[[], bool]], AsyncIterator[BuildEvent]]  # (after, stopped) -> events


def event_stream(
    build: Build, *, wire: Wire, settings: Settings, after: int = 0, follow: Follow | None = None
) -> Response:
    """`build`'s events after `after`, live, to its end (or to the service's stop, with a last word).

    `follow` reads them from elsewhere than `build` itself (the build store: a build this process
    does not hold)."""
    encode = _encoder(wire)

    async def source(stopping: Callable[[], bool]) -> AsyncGenerator[bytes, None]:
        final = False
        events = build.follow(after, stopped=stopping) if follow is None else follow(after, stopping)
        async for event in events:
            final = event.phase.final
            yield encode(event)
        if stopping() and not final:
            yield _farewell(wire, build)

    return EventStream(
        source, keepalive=settings.keepalive_interval, send_timeout=settings.send_timeout, headers=_HEADERS
    )


def failed_payload(error: BinderError) -> dict[str, Any]:
    """A `failed` message for an error raised before a build existed (BinderHub's shape)."""
    return {"phase": Phase.FAILED.value, "message": error.message.rstrip("\n") + "\n", "code": error.code}


def complete_stream(messages: list[bytes]) -> Response:
    """A finished event stream (SSE messages, e.g. `BuildEvent.binderhub_sse()`, encoded once per event)
    as one plain response: no keepalive task, no disconnect watcher."""
    return Response(b"".join(messages), media_type="text/event-stream", headers=_HEADERS)
