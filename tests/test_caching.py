from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from binder_service.caching import MISSING, AsyncCache
from tests.support.clock import FakeClock


async def test_concurrent_misses_share_one_computation() -> None:
    cache: AsyncCache[str, int] = AsyncCache(ttl=0)
    calls = 0

    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 7

    waiting = asyncio.gather(*(cache.get_or_compute("k", compute) for _ in range(100)))
    await asyncio.sleep(0)  # every caller is waiting on the one computation
    release.set()
    results = await waiting
    assert results == [7] * 100
    assert calls == 1
    await cache.get_or_compute("k", compute)  # ttl 0: nothing kept
    assert calls == 2


async def test_errors_are_shared_but_not_cached_and_keep_filters() -> None:
    cache: AsyncCache[str, bool] = AsyncCache(ttl=60)
    outcomes: Iterator[Exception | bool] = iter([RuntimeError("down"), False, True])

    async def compute() -> bool:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with pytest.raises(RuntimeError):
        await cache.get_or_compute("k", compute, keep=bool)
    assert await cache.get_or_compute("k", compute, keep=bool) is False  # not kept
    assert await cache.get_or_compute("k", compute, keep=bool) is True
    assert await cache.get_or_compute("k", compute, keep=bool) is True  # cached: iterator exhausted otherwise


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    cache: AsyncCache[str, int] = AsyncCache(ttl=0)
    release = asyncio.Event()

    async def compute() -> int:
        await release.wait()
        return 1

    first = asyncio.create_task(cache.get_or_compute("k", compute))
    second = asyncio.create_task(cache.get_or_compute("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == 1


def test_bounded_lru() -> None:
    cache: AsyncCache[int, int] = AsyncCache(ttl=60, max_size=3)
    for i in range(5):
        cache.put(i, i)
    assert [cache.get(i) for i in range(5)] == [None, None, 2, 3, 4]


async def test_none_and_false_are_values_not_misses() -> None:
    cache: AsyncCache[str, int | None] = AsyncCache(ttl=60)
    calls = 0

    async def compute() -> None:
        nonlocal calls
        calls += 1

    assert await cache.get_or_compute("k", compute) is None
    assert await cache.get_or_compute("k", compute) is None
    assert calls == 1  # the cached None was a hit
    assert cache.get("k", MISSING) is None
    assert cache.get("other", MISSING) is MISSING
    assert cache.get("other") is None  # dict-like without a default


async def test_expiry_follows_the_injected_clock() -> None:
    clock = FakeClock()
    cache: AsyncCache[str, str] = AsyncCache(ttl=10, clock=clock)
    cache.put("k", "v")
    clock.now += 9.9
    assert cache.get("k") == "v"
    clock.now += 0.1
    assert cache.get("k", MISSING) is MISSING
    assert len(cache) == 0  # an expired entry is dropped when seen


async def test_each_result_can_have_its_own_ttl() -> None:
    clock = FakeClock()
    cache: AsyncCache[str, tuple[str, float]] = AsyncCache(ttl=1000, clock=clock)

    async def token(lifetime: float) -> tuple[str, float]:
        return (f"t{lifetime}", lifetime)

    await cache.get_or_compute("short", lambda: token(5), ttl=lambda t: t[1])
    await cache.get_or_compute("long", lambda: token(50), ttl=lambda t: t[1])
    cache.put("default", ("d", 0))
    clock.now += 6
    assert cache.get("short") is None
    assert cache.get("long") == ("t50", 50)
    assert cache.get("default") == ("d", 0)
    cache.put("long", ("gone", 0), ttl=0)  # a ttl of 0 keeps nothing, not even the older value
    assert cache.get("long") is None
