"""A spawn's build events, kept for every reader of the spawn-pending page.

JupyterHub calls `Spawner.progress()` once per reader (the page, a reload, an API client), at any
time during the spawn; each reader must see the events from the first one on, then live ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

# Where each build phase puts JupyterHub's progress bar (0-100); the server's start takes the rest.
PHASE_PROGRESS = {"waiting": 5, "fetching": 10, "building": 15, "pushing": 75, "built": 80, "ready": 85}
BUILDING_MAX = 70
MAX_MESSAGE = 1000
PHASE_LABEL = {
    "waiting": "Waiting",
    "fetching": "Fetching",
    "building": "Building",
    "pushing": "Pushing",
    "built": "Built",
    "ready": "Ready",
    "failed": "Failed",
}


class ProgressLog:
    """An append-only list of progress events that readers follow until it is closed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = False
        self._wake = asyncio.Event()
        self._build_lines = 0

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._wake.set()
        self._wake = asyncio.Event()

    def add_build_event(self, event: dict[str, Any]) -> None:
        """One event of binder-service's native stream, as a JupyterHub progress event."""
        phase = str(event.get("phase") or "")
        message = str(event.get("message") or "").strip()
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " ..."
        if not message and phase in ("waiting", "fetching", "building", "pushing"):
            return  # blank build output lines say nothing on the page
        label = PHASE_LABEL.get(phase, phase.capitalize() or "Build")
        progress: dict[str, Any] = {"message": f"{label}: {message}" if message else label}
        if phase == "building":
            # Log lines nudge the bar forward, slower and slower, never past BUILDING_MAX.
            self._build_lines += 1
            step = PHASE_PROGRESS["building"] + self._build_lines // 3
            progress["progress"] = min(step, BUILDING_MAX)
        elif phase in PHASE_PROGRESS:
            progress["progress"] = PHASE_PROGRESS[phase]
        self.add(progress)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        """Every event from the first, then new ones as they come, until closed."""
        sent = 0
        while True:
            while sent < len(self.events):
                yield self.events[sent]
                sent += 1
            if self.closed:
                return
            await self._wake.wait()
