"""Give the memory a burst of streams used back to the system once the last of them has ended.

A thousand subscribers on one build allocate and free many small objects at once; Python frees them all
when the streams end, but glibc's allocator keeps the pages (fragmented between live objects) and the
process stays large. `malloc_trim(0)` returns every free page. Called when the number of open streams
drops to zero (rare, and cheap next to a burst), only where glibc is the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["StreamCount"]

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


class StreamCount:
    """Counts open streams; trims the heap when the count falls back to zero after `burst` or more."""

    def __init__(self, burst: int = 100) -> None:
        self.open = 0
        self._peak = 0
        self._burst = burst

    def opened(self) -> None:
        self.open += 1
        self._peak = max(self._peak, self.open)

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and self._peak >= self._burst:
            self._peak = 0
            if _TRIM is not None:
                _TRIM(0)


STREAMS = StreamCount()
