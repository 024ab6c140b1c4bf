"""Give the memory a burst of streams used back to the system once the last of them has ended.

A thousand subscribers on one build allocate and free many small objects at once; Python frees them all
when the streams end, but glibc's allocator keeps the pages (fragmented between live objects) and the
process stays large. `malloc_trim(0)` returns every free page. Called shortly after the number of open
streams drops to zero (rare, and cheap next to a burst), only where glibc is the allocator: not at once,
because when the last stream's response ends, its connection and those of the streams that ended with
it (a build's last event ends them all together) are still held by the server, and are freed after.

Clients that keep their connection open after a stream (a browser, an HTTP client's keep-alive pool)
free its memory later still, after that trim: so the server also counts closed connections
(`CONNECTIONS`, from server.py) and trims shortly after every `burst` of them (issue 16: a thousand
subscribers holding their connections 3 s kept +35 MB; trimmed as they close, +20 MB).

Each trim first collects cyclic garbage: a burst leaves a few hundred unreachable objects in reference
cycles that hold ~12 MB (1,000 subscribers), which the collector's rare full passes would free only much
later, so the trim could not return their pages (after it: +7 MB). `binder-service serve` freezes what
start-up made (`gc.freeze()`), so such a collection looks only at objects made since: a few ms, ~80 ms
after 1,000 streams on a busy machine (a full pass over start-up's half a million objects took 300-500 ms).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

__all__ = ["CONNECTIONS", "TRIM_DELAY", "ClosedConnections", "StreamCount"]

log = logging.getLogger(__name__)


def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


_TRIM = _malloc_trim()
TRIM_DELAY = 1.0  # seconds after the last stream ended: its connection is gone by then


class StreamCount:
    """Counts open streams; trims the heap when the count falls back to zero after `burst` or more."""

    def __init__(self, burst: int = 100, trim: Callable[[int], object] | None = _TRIM) -> None:
        self.open = 0
        self.trims = 0
        self._peak = 0
        self._burst = burst
        self._trim = trim
        self._pending: asyncio.TimerHandle | None = None

    def opened(self) -> None:
        self.open += 1
        self._peak = max(self._peak, self.open)

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and self._peak >= self._burst:
            self._peak = 0
            if self._trim is not None and self._pending is None:
                self._pending = asyncio.get_running_loop().call_later(TRIM_DELAY, self._run_trim)

    def _run_trim(self) -> None:
        self._pending = None
        if self._trim is not None:
            gc.collect()  # cycles the burst left: freed now, so their pages can go back
            self._trim(0)
            self.trims += 1


STREAMS = StreamCount()


class ClosedConnections:
    """Trims the heap `TRIM_DELAY` after every `burst` connections closed (at most one trim pending)."""

    def __init__(self, burst: int = 100, trim: Callable[[int], object] | None = _TRIM) -> None:
        self.closed_since_trim = 0
        self.closed_total = 0
        self.trims = 0
        self._burst = burst
        self._trim = trim
        self._pending: asyncio.TimerHandle | None = None

    def closed(self) -> None:
        self.closed_since_trim += 1
        self.closed_total += 1
        if self.closed_since_trim >= self._burst and self._trim is not None and self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(TRIM_DELAY, self._run_trim)

    def _run_trim(self) -> None:
        self._pending = None
        self.closed_since_trim = 0  # those closed until now are in this trim
        if self._trim is not None:
            gc.collect()  # cycles the burst left: freed now, so their pages can go back
            self._trim(0)
            self.trims += 1


CONNECTIONS = ClosedConnections()
