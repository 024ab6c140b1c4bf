"""A fair (FIFO) limit on concurrent builds that tells each waiting build its place in line."""

from __future__ import annotations

import asyncio
from collections import deque

from .build import Build


class BuildQueue:
    """At most `slots` builds hold a slot; the others wait in order and learn their position."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.running = 0
        self._waiting: deque[tuple[Build, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def take(self) -> None:
        """Hold a slot at once, even beyond `slots`: an adopted build is running already."""
        self.running += 1

    async def acquire(self, build: Build) -> None:
        """Return once `build` holds a slot. Cancelling the wait gives up the place in line."""
        if self.running < self.slots and not self._waiting:
            self.running += 1
            return
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((build, slot))
        self._announce()
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            else:
                self._waiting = deque(w for w in self._waiting if w[1] is not slot)
                self._announce()
            raise

    def release(self) -> None:
        """Free a slot: hand it straight to the first waiting build, if any."""
        if self.running > self.slots:  # adopted builds took slots beyond the limit: give those back first
            self.running -= 1
            return
        while self._waiting:
            _, slot = self._waiting.popleft()
            if not slot.done():
                slot.set_result(None)
                self._announce()
                return
        self.running -= 1

    def _announce(self) -> None:
        for position, (build, _) in enumerate(self._waiting, start=1):
            if build.queue_position != position:
                build.queue_position = position
                build.emit_queue_position(position)
