from __future__ import annotations

import asyncio

import pytest

from binder_service.caching import AsyncCache


async def test_concurrent_misses_share_one_computation() -> None:
    cache: AsyncCache[str, int] = AsyncCache(ttl=0)
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 7

    results = await asyncio.gather(*(cache.get_or_compute("k", compute) for _ in range(100)))
    assert results == [7] * 100
    assert calls == 1
    await cache.get_or_compute("k", compute)  # ttl 0: nothing kept
    assert calls == 2


async def test_errors_are_shared_but_not_cached_and_keep_filters() -> None:
    cache: AsyncCache[str, bool] = AsyncCache(ttl=60)
    outcomes = iter([RuntimeError("down"), False, True])

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
