"""The build store's costs: per-event write cost, fan-out to 1,000 subscribers with the store on and off,
start-up and list latency with 100,000 stored builds. SQLite (a file) and PostgreSQL (a cluster of its own).

    .venv/bin/python bench/store.py [--quick] [--no-postgres]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.store.test_scale import _fill  # noqa: E402
from tests.support.postgres import postgres_cluster  # noqa: E402
from tests.support.records import record  # noqa: E402

from binder_service.builds.build import Build, BuildStatus  # noqa: E402
from binder_service.builds.recording import Recorder  # noqa: E402
from binder_service.events import BuildEvent, Phase  # noqa: E402
from binder_service.providers import ResolvedRepo  # noqa: E402
from binder_service.store import BuildStore  # noqa: E402

REPO = ResolvedRepo("git", "https://example.org/r.git", "main", "c" * 40, "example.org-r")


async def write_cost(url: str, events: int) -> None:
    store = await BuildStore.open(url, op_timeout=30.0)
    try:
        store.save_build(record("bench"))
        started = time.perf_counter()
        for i in range(1, events + 1):
            store.add_event("bench", BuildEvent(i, Phase.BUILDING, f"Step {i}/{events} : RUN something\n"))
        queued = time.perf_counter() - started
        await store.flush()
        total = time.perf_counter() - started
        print(
            f"  write: {events} events queued in {queued * 1e3:.1f} ms ({queued / events * 1e6:.2f} µs/event "
            f"on the loop); written in {total:.2f} s ({events / total:,.0f} events/s to the database)"
        )
    finally:
        await store.aclose()


async def fan_out(url: str | None, subscribers: int, events: int) -> float:
    """Events per second delivered to every subscriber; the store (when `url`) records each event."""
    store = await BuildStore.open(url, op_timeout=30.0) if url else None
    try:
        build = Build(id="fan", image_name="img", repo=REPO, max_events=events + 100)
        if store is not None:  # the manager's own hook: every event and change goes to the store
            build.recorder = Recorder(store, owner="bench")
            build.recorder.changed(build)
        got = [0] * subscribers

        async def watch(n: int) -> None:
            async for _ in build.follow():
                got[n] += 1

        tasks = [asyncio.create_task(watch(n)) for n in range(subscribers)]
        await asyncio.sleep(0)
        started = time.perf_counter()
        for i in range(events):
            build.emit(Phase.BUILDING, f"line {i}\n")
            if i % 50 == 0:
                await asyncio.sleep(0)  # a build's output arrives in pieces: let watchers run between
        build.emit(Phase.READY, "done\n", image_name="img")
        build.finish(BuildStatus.READY)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        assert all(n == events + 1 for n in got)
        if store is not None:
            flush_started = time.perf_counter()
            await store.flush()
            print(f"    (store caught up {time.perf_counter() - flush_started:.2f} s after the last watcher)")
        return (events + 1) / elapsed
    finally:
        if store is not None:
            await store.aclose()


async def startup(url: str, builds: int) -> None:
    store = await BuildStore.open(url, op_timeout=60.0)
    async with store.engine.begin() as conn:
        await _fill(conn, store.dialect)  # 100,000 builds (the scale test's data)
    await store.aclose()
    del builds
    opens, lists, mine = [], [], []
    for _ in range(5):
        started = time.perf_counter()
        store = await BuildStore.open(url, op_timeout=60.0)
        await store.active_builds()  # what a restarted service reads first
        opens.append(time.perf_counter() - started)
        for _ in range(20):
            t = time.perf_counter()
            await store.list_builds(limit=100)
            lists.append(time.perf_counter() - t)
            t = time.perf_counter()
            await store.list_builds(requester="alice", limit=100)
            mine.append(time.perf_counter() - t)
        await store.aclose()
    print(
        f"  start-up with 100,000 builds (open + migrate check + running builds): "
        f"median {statistics.median(opens) * 1e3:.1f} ms"
    )
    print(
        f"  list of 100 newest: median {statistics.median(lists) * 1e3:.2f} ms; "
        f"one user's: median {statistics.median(mine) * 1e3:.2f} ms"
    )


@contextlib.contextmanager
def databases(postgres: bool) -> Iterator[list[tuple[str, object]]]:
    with tempfile.TemporaryDirectory() as tmp:
        made: list[tuple[str, object]] = []
        counter = iter(range(1000))

        def sqlite() -> str:
            return f"sqlite+aiosqlite:///{tmp}/bench-{next(counter)}.sqlite"

        made.append(("SQLite file", sqlite))
        if not postgres:
            yield made
            return
        with postgres_cluster() as cluster:
            made.append(("PostgreSQL", cluster.create_database))
            yield made


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    events = 5_000 if args.quick else 50_000
    fan_events = 200 if args.quick else 1_000
    with databases(not args.no_postgres) as dbs:
        await fan_out(None, 1000, fan_events)  # warm-up: the first run pays for imports and allocation
        runs = 3
        baseline = statistics.median([await fan_out(None, 1000, fan_events) for _ in range(runs)])
        print(f"fan-out, store off: {baseline:,.0f} events/s to each of 1,000 subscribers (median of {runs})")
        for name, make in dbs:
            print(f"{name}:")
            await write_cost(make(), events)  # type: ignore[operator]
            rate = statistics.median([await fan_out(make(), 1000, fan_events) for _ in range(runs)])  # type: ignore[operator]
            print(
                f"  fan-out, store on: {rate:,.0f} events/s to each of 1,000 subscribers "
                f"({rate / baseline:.0%} of store off, median of {runs})"
            )
            await startup(make(), 100_000)  # type: ignore[operator]


if __name__ == "__main__":
    asyncio.run(main())
