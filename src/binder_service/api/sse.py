"""Server-Sent Events responses: keepalive comments while idle, no buffering by proxies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent

from ..errors import BinderError
from ..events import Phase

# A client that cannot take a message for this long is dropped (the build goes on without it).
SEND_TIMEOUT = 60.0


class _Keepalive(ServerSentEvent):
    def encode(self) -> bytes:
        return b":keepalive\n\n"  # BinderHub's exact comment line


def event_stream(events: AsyncIterator[ServerSentEvent], *, keepalive: float) -> EventSourceResponse:
    return EventSourceResponse(
        events,
        ping=keepalive,
        ping_message_factory=_Keepalive,
        send_timeout=SEND_TIMEOUT,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def failed_event(error: BinderError) -> ServerSentEvent:
    """A `failed` message for an error raised before a build existed (BinderHub's shape)."""
    payload = {"phase": Phase.FAILED.value, "message": error.message.rstrip("\n") + "\n", "code": error.code}
    return ServerSentEvent(data=json.dumps(payload))
