"""Server-Sent Events responses: keepalive comments while idle, no buffering by proxies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from ..errors import BinderError
from ..events import Phase

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
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
        headers=_HEADERS,
    )


def failed_payload(error: BinderError) -> dict[str, str]:
    """A `failed` message for an error raised before a build existed (BinderHub's shape)."""
    return {"phase": Phase.FAILED.value, "message": error.message.rstrip("\n") + "\n", "code": error.code}


def complete_stream(payloads: list[dict[str, Any]]) -> Response:
    """A finished event stream as one plain response: no keepalive task, no disconnect watcher."""
    body = "".join(f"data: {json.dumps(p)}\n\n" for p in payloads)
    return Response(body, media_type="text/event-stream", headers=_HEADERS)
