"""Per-resolution cost of the `gh` provider against the local GitHub fake: cold (200) vs cached (ETag, 304).

    .venv/bin/python bench/resolve_github.py [iterations]

Cold: no ETag kept, so GitHub answers 200 with the sha. Cached: the kept ETag is sent as If-None-Match
and the fake answers 304 (free of rate limit for an authorised request). One shared httpx client, as in
the service, so both reuse one keep-alive connection. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

from tests.support.fake_apis import FakeGitHub

from binder_service.providers import RepoSpec
from binder_service.providers.github import GitHubProvider, github_api

TOKEN = "bench-token"
SPEC = RepoSpec(provider="gh", repo="binder-examples/requirements", ref="main")


def provider(http: httpx.AsyncClient, url: str) -> GitHubProvider:
    api = github_api(http, api_url=url, token=SecretStr(TOKEN), timeout=10)
    return GitHubProvider(api, max_input_length=2048)


async def measure(label: str, n: int, make: object, fake: FakeGitHub) -> None:
    assert callable(make)
    seen = len(fake.seen)
    times: list[float] = []
    for _ in range(n):
        gh = make()
        start = time.perf_counter()
        await gh.resolve(SPEC)
        times.append(time.perf_counter() - start)
    statuses = sorted({s.status for s in fake.seen[seen:]})
    times.sort()
    us = [t * 1e6 for t in times]
    print(
        f"{label:<22} n={n:<5} mean {statistics.fmean(us):7.0f} µs   p50 {us[len(us) // 2]:7.0f} µs   "
        f"p95 {us[int(len(us) * 0.95)]:7.0f} µs   requests {len(fake.seen) - seen:<5} statuses {statuses}"
    )


async def main(n: int) -> None:
    with FakeGitHub(limit=10**9, authenticated_limit=10**9) as fake:
        fake.tokens.add(TOKEN)
        fake.add_repo("binder-examples", "requirements")
        async with httpx.AsyncClient() as http:
            warm = provider(http, fake.url)
            await warm.resolve(SPEC)  # opens the connection and keeps the ETag
            for _ in range(50):  # warm-up of both paths
                await provider(http, fake.url).resolve(SPEC)
                await warm.resolve(SPEC)
            before = fake.remaining("token")
            await measure("cold (200, sha body)", n, lambda: provider(http, fake.url), fake)
            cold_cost = before - fake.remaining("token")
            before = fake.remaining("token")
            await measure("cached (ETag -> 304)", n, lambda: warm, fake)
            warm_cost = before - fake.remaining("token")
            full = RepoSpec(provider="gh", repo=SPEC.repo, ref="a" * 40)
            start = time.perf_counter()
            for _ in range(n):
                await warm.resolve(full)
            per = (time.perf_counter() - start) / n * 1e6
            print(f"{'full sha (no request)':<22} n={n:<5} mean {per:7.1f} µs")
            print(f"rate limit used: cold {cold_cost} of {n} requests, cached {warm_cost} of {n} requests")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
