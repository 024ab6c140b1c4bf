"""Admission: the one component that decides whether a request may start (or join) a build.

It owns the three limits: a user's request rate (`max_requests_per_minute`), a user's queued or running
builds (`max_builds_per_user`) and a repository rule's quota (`spec_config`). Alone, a service counts what
it holds in memory. Replicas sharing one PostgreSQL build store also count what the others run (the
store's active builds of other owners) and share one request log, so a limit holds across replicas.
Two replicas admitting the last place in the same instant can both succeed: the limits are exact within
a replica and within that instant across them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from .auth import Identity, RequestRate
from .auth.limits import WINDOW
from .errors import TooManyRequests
from .policy import SpecRule
from .store import BuildRecord, BuildStore


class Admission:
    def __init__(
        self,
        *,
        requests_per_minute: int,
        builds_per_user: int,
        store: BuildStore | None = None,
        owner: str = "",
        shared: bool = False,
        build_timeout: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._build_timeout = build_timeout
        self.requests_per_minute = requests_per_minute
        self.builds_per_user = builds_per_user
        self._local_rate = RequestRate(requests_per_minute)
        self._store = store if shared else None
        self._owner = owner
        self._clock = clock

    @property
    def shared(self) -> bool:
        return self._store is not None

    def builds_limit(self, user: Identity) -> int:
        """How many queued or running builds `user` may have (0: no limit)."""
        return 0 if user.admin else self.builds_per_user

    async def check_rate(self, user: Identity) -> None:
        """TooManyRequests when `user` asked for builds more often than the rate allows (admins never)."""
        if user.name is None or user.admin or self.requests_per_minute <= 0:
            return
        if self._store is None:
            self._local_rate.check(user.name)
            return
        now = self._clock()
        count = await self._store.record_request(user.name, now, WINDOW)
        if count > self.requests_per_minute:
            oldest = await self._store.oldest_request(user.name, now - WINDOW)
            retry = max(1, int((oldest or now) + WINDOW - now) + 1)
            raise TooManyRequests(
                f"more than {self.requests_per_minute} build requests in a minute; try again in {retry}s"
            )

    async def elsewhere(self) -> list[BuildRecord]:
        """Queued or running builds other replicas hold (none without a shared store)."""
        if self._store is None:
            return []
        now = datetime.fromtimestamp(self._clock(), UTC)
        return [
            r
            for r in await self._store.active_builds()
            if r.owner != self._owner and not r.stale(now, self._build_timeout)  # a dead replica's
        ]

    @staticmethod
    def user_builds(requester: str, elsewhere: list[BuildRecord]) -> int:
        return sum(requester in r.requesters for r in elsewhere)

    @staticmethod
    def rule_builds(rule: SpecRule, elsewhere: list[BuildRecord], *, image: str) -> int:
        """Builds of repositories under `rule` other replicas run (not counting one of `image`: joining it
        takes no new place)."""
        return sum(
            1 for r in elsewhere if r.spec_key and r.image != image and rule.pattern.search(r.spec_key)
        )
