"""A clock the test moves by hand: `clock.now += 61` instead of sleeping."""

from __future__ import annotations


class FakeClock:
    """Callable like `time.monotonic` or `time.time`; reads `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
