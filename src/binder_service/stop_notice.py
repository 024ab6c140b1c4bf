"""Tells the app when the server begins a graceful stop, before it waits for open connections to close.

uvicorn calls every connection's `shutdown()` when it starts to stop (SIGTERM, SIGINT, or `should_exit`),
then waits for the connections to finish. An event stream never finishes by itself, so the app must
know: this sets the `stopping` event the app's lifespan put in its state (`scope["state"]`), and every
open stream then sends its last event and ends (api/stream.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["StopNotice"]


class StopNotice:
    """Mixin for uvicorn's HTTP protocol classes (which hold the lifespan state as `app_state`)."""

    app_state: dict[str, Any]

    def shutdown(self) -> None:
        stopping = self.app_state.get("stopping")
        if isinstance(stopping, asyncio.Event):
            stopping.set()
        super().shutdown()  # type: ignore[misc]  # uvicorn's protocol, after this mixin in the MRO
