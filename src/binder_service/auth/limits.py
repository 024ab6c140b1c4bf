"""Per-user request rate: a sliding one-minute window, bounded in memory."""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from ..errors import TooManyRequests

WINDOW = 60.0


class RequestRate:
    """At most `per_minute` build requests per user in any 60 s; 0 turns it off."""

    def __init__(self, per_minute: int, *, max_users: int = 100_000) -> None:
        self.per_minute = per_minute
        self._max_users = max_users
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, user: str, now: float | None = None) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic() if now is None else now
        times = self._seen.pop(user, None) or deque()
        while times and times[0] <= now - WINDOW:
            times.popleft()
        self._seen[user] = times  # most recently active last, so the oldest user is dropped first
        if len(self._seen) > self._max_users:
            self._seen.popitem(last=False)
        if len(times) >= self.per_minute:
            retry = max(1, int(times[0] + WINDOW - now) + 1)
            raise TooManyRequests(
                f"more than {self.per_minute} build requests in a minute; try again in {retry}s"
            )
        times.append(now)
