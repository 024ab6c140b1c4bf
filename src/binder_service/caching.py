"""A small async cache: bounded, with expiry, and one computation in flight per key.

Two hundred identical requests arriving together should ask the repository host and the registry
once, not two hundred times; that is the "single flight" part.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, Generic, TypeVar, overload

from .errors import BinderError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")


class Missing(enum.Enum):
    """The type of `MISSING`: what `AsyncCache.get` answers for a key it does not hold."""

    MISSING = enum.auto()


# A real sentinel, so None, False or 0 can be cached values like any other.
MISSING: Final = Missing.MISSING


class AsyncCache(Generic[K, V]):
    """LRU of at most `max_size` values, each kept `ttl` seconds; concurrent misses share one computation.

    `clock` (monotonic seconds) is injectable so expiry can be tested without sleeping.
    """

    def __init__(
        self, *, ttl: float, max_size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._values: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._inflight: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        """The live value for `key`, else `default` (pass `MISSING` to tell a cached None from a miss)."""
        hit = self._values.get(key)
        if hit is None:
            return default
        expires, value = hit
        if expires <= self._clock():
            del self._values[key]
            return default
        self._values.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Keep `value` for `ttl` seconds (the cache's default when None); a ttl <= 0 keeps nothing."""
        ttl = self.ttl if ttl is None else ttl
        if ttl <= 0:
            self._values.pop(key, None)  # an older value must not outlive its replacement
            return
        self._values[key] = (self._clock() + ttl, value)
        self._values.move_to_end(key)
        while len(self._values) > self.max_size:
            self._values.popitem(last=False)

    def discard(self, key: K) -> None:
        self._values.pop(key, None)

    def clear(self) -> None:
        self._values.clear()

    async def get_or_compute(
        self,
        key: K,
        compute: Callable[[], Awaitable[V]],
        *,
        keep: Callable[[V], bool] = lambda _: True,
        ttl: Callable[[V], float] | None = None,
    ) -> V:
        """The cached value, or the result of `compute()` shared with every concurrent caller.

        Errors are shared with the callers waiting at that moment but never cached. `keep` decides
        whether a result is stored (e.g. only "the image exists", never "it does not"); `ttl` gives
        a result its own lifetime (e.g. a token's `expires_in`) instead of the cache's default.
        """
        hit = self.get(key, MISSING)
        if hit is not MISSING:
            return hit
        task = self._inflight.get(key)
        if task is None:
            # Its own task, so a caller that goes away does not cancel it for the others.
            task = asyncio.ensure_future(self._compute(key, compute, keep, ttl))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Future[V]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so an error nobody awaited is not reported as lost

    async def _compute(
        self,
        key: K,
        compute: Callable[[], Awaitable[V]],
        keep: Callable[[V], bool],
        ttl: Callable[[V], float] | None,
    ) -> V:
        value = await compute()
        if keep(value):
            self.put(key, value, None if ttl is None else ttl(value))
        return value


class LookupCache(Generic[K, V]):
    """Single-flight lookups whose results are kept `ttl` seconds and whose `remember`ed errors `error_ttl`.

    A broken link asks about a missing repository again and again; remembering "not found" briefly
    spares the host's API (and our rate limit there) without hiding a newly created one for long.
    """

    def __init__(
        self,
        *,
        ttl: float,
        error_ttl: float,
        remember: tuple[type[BinderError], ...],
        max_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._values: AsyncCache[K, V] = AsyncCache(ttl=ttl, max_size=max_size, clock=clock)
        self._errors: AsyncCache[K, tuple[type[BinderError], str]] = AsyncCache(
            ttl=error_ttl, max_size=max_size, clock=clock
        )
        self._remember = remember

    async def get_or_compute(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        known = self._errors.get(key)
        if known is not None:
            kind, message = known
            raise kind(message)  # a fresh error: a raised instance carries its first traceback along
        try:
            return await self._values.get_or_compute(key, compute)
        except self._remember as e:
            self._errors.put(key, (type(e), e.message))
            raise
