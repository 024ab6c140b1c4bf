"""The build store's costs: per-event write cost, fan-out to 1,000 subscribers with the store on and off,
start-up and list latency with 100,000 stored builds. SQLite (a file) and PostgreSQL (a cluster of its own).
Replicas (`--replicas`: PostgreSQL only): join latency, live lag of a joined build, lease renewal, admission.

    .venv/bin/python bench/store.py [--quick] [--no-postgres] [--replicas]

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
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # world: the engine and registry the join figure builds with

from tests.store.test_scale import _fill  # noqa: E402
from tests.support.postgres import postgres_cluster  # noqa: E402
from tests.support.records import record  # noqa: E402
from tests.support.repos import buildable_repo  # noqa: E402

from binder_service.admission import Admission  # noqa: E402
from binder_service.auth import Identity  # noqa: E402
from binder_service.builds.build import Build, BuildStatus  # noqa: E402
from binder_service.builds.recording import Recorder, restore, stored_events  # noqa: E402
from binder_service.builds.replicas import mirror  # noqa: E402
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
    async with store.db.transaction() as conn:
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
            return f"sqlite:///{tmp}/bench-{next(counter)}.sqlite"

        made.append(("SQLite file", sqlite))
        if not postgres:
            yield made
            return
        with postgres_cluster() as cluster:
            made.append(("PostgreSQL", cluster.create_database))
            yield made


def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1e3:.1f} ms, max {max(values) * 1e3:.1f} ms"


async def replicas(url: str, rounds: int) -> None:
    """What replicas on one store pay: joining another's build, following it live, leases, admission."""
    a, b = await BuildStore.open(url, op_timeout=30.0), await BuildStore.open(url, op_timeout=30.0)
    now = datetime.now(UTC)
    try:
        # Join: b's request for an image a builds -> b holds a's build with its first event (the manager's
        # _claim + _join: the claim finds a's lease, then its record and stored events).
        joins, claims = [], []
        for i in range(rounds):
            image = f"reg/join-{i}:1"
            started = time.perf_counter()
            await a.claim(record(f"o{i}", owner="a", image=image, created_at=now), ttl=30)
            claims.append(time.perf_counter() - started)
            a.add_event(f"o{i}", BuildEvent(1, Phase.WAITING, "Waiting for build to start\n"))
            await a.flush()
            started = time.perf_counter()
            other = await b.claim(record(f"j{i}", owner="b", image=image, created_at=now), ttl=30)
            assert other == f"o{i}"
            found = await b.get_build(other)
            assert found is not None
            copy = restore(found, await stored_events(b, other), max_events=1000)
            assert copy.events()[0].id == 1
            joins.append(time.perf_counter() - started)
        print(f"  claim (a new build's lease and record): {_ms(claims)}")
        print(f"  join (request on b -> first event of a's build): {_ms(joins)}")
        # Live: a emits (queued to its writer), b's copy replays it from the store.
        found = await b.get_build("o0")
        assert found is not None
        copy = restore(found, await stored_events(b, "o0"), max_events=1000)
        follower = asyncio.create_task(mirror(copy, b, build_timeout=3600, on_ready=lambda: None))
        lags: list[float] = []
        for i in range(2, 2 + rounds):
            sent = time.perf_counter()
            a.add_event("o0", BuildEvent(i, Phase.BUILDING, f"Step {i}\n"))
            async for event in copy.follow(i - 1):
                if event.id == i:
                    lags.append(time.perf_counter() - sent)
                    break
            await asyncio.sleep(0.05)
        follower.cancel()
        await asyncio.wait([follower])
        print(f"  live lag of a joined build (event on a -> in b's copy; poll 0.2 s): {_ms(lags)}")
        # Renewal: one statement for all of a replica's running builds.
        for n in (1, 10, 100):
            ids = [f"o{i}" for i in range(min(n, rounds))] + [f"x{i}" for i in range(max(0, n - rounds))]
            times = []
            for _ in range(20):
                started = time.perf_counter()
                await a.renew("a", ids, ttl=30)
                times.append(time.perf_counter() - started)
            print(f"  lease renewal, {n} builds: {_ms(times)} (every 10 s at the default 30 s lease)")
        # Admission with locking: 4 replicas admitting at once, distinct users, then one user's last places.
        stores = [await BuildStore.open(url, op_timeout=30.0) for _ in range(4)]
        gates = [
            Admission(requests_per_minute=0, builds_per_user=2, store=s, owner=f"r{k}", shared=True)
            for k, s in enumerate(stores)
        ]
        try:
            users = [Identity(name=f"u{i}", kind="user") for i in range(rounds * 4)]
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    gates[i % 4].admit(u, spec_key=f"gh/x/{i}", image=f"reg/a{i}:1")
                    for i, u in enumerate(users)
                )
            )
            spread = time.perf_counter() - started
            carol = Identity(name="carol", kind="user")  # no builds yet (the join records are alice's)
            started = time.perf_counter()
            results = await asyncio.gather(
                *(
                    gates[i % 4].admit(carol, spec_key=f"gh/y/{i}", image=f"reg/y{i}:1")
                    for i in range(rounds)
                ),
                return_exceptions=True,
            )
            contended = time.perf_counter() - started
            admitted = sum(not isinstance(r, BaseException) for r in results)
            print(
                f"  admission, 4 replicas: {len(users) / spread:,.0f} admits/s (distinct users); "
                f"{rounds / contended:,.0f}/s on one user's key ({admitted} of {rounds} admitted, limit 2)"
            )
        finally:
            for gate in gates:
                await gate.aclose()
            for s in stores:
                await s.aclose()
    finally:
        await a.aclose()
        await b.aclose()


def join_over_http(rounds: int) -> None:
    """Two real `serve` replicas on one PostgreSQL, the world's engine and registry: replica b's BinderHub
    request for an image a is building -> b's first event of a's build (the whole path: HTTP, resolve,
    admission, claim, join)."""
    import world

    world_env = world.up()
    with tempfile.TemporaryDirectory() as tmp, postgres_cluster() as cluster:
        base = Path(tmp)
        (base / "git").mkdir()
        join_rounds(world_env, base, cluster.create_database(), rounds)


def join_rounds(world_env: dict[str, str], base: Path, db: str, rounds: int) -> None:
    from tests.store.test_replica_join import _env, _until
    from tests.support.gitserve import serve_git_daemon
    from tests.support.repos import counting_repo2docker
    from tests.support.serve_process import serve_process

    with serve_git_daemon(base / "git") as git_url:
        r2d, _ = counting_repo2docker(base)
        prefix = f"bench-join-{time.time_ns() % 10**6}/"
        a_env = _env(world_env, db, base / "a", prefix, r2d)
        b_env = _env(world_env, db, base / "b", prefix, r2d)
        firsts: list[float] = []
        with serve_process(a_env, base / "a.log") as (_, a), serve_process(b_env, base / "b.log") as (_, b):
            for i in range(rounds):
                name, _ = buildable_repo(base / "git", run="sleep 2", prefix=f"join{i}")
                repo = git_url + name
                made = httpx.post(f"{a}api/v1/builds", json={"repo": repo, "ref": "main"}, timeout=60).json()
                _until(f"{a}api/v1/builds/{made['id']}/events", "building")
                spec = quote(repo, safe="") + "/main"
                started = time.perf_counter()
                with httpx.stream(
                    "GET", f"{b}build/git/{spec}?build_only=true", headers={"Accept": "text/event-stream"}
                ) as r:
                    for line in r.iter_lines():
                        if line.startswith("data:"):
                            firsts.append(time.perf_counter() - started)
                            break
                _until(f"{b}api/v1/builds/{made['id']}/events", "ready")
        print(f"  join over HTTP (b's /build request -> its first event of a's build): {_ms(firsts)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--replicas", action="store_true", help="only the replicas' figures (PostgreSQL)")
    args = parser.parse_args()
    if args.replicas:
        with postgres_cluster() as cluster:
            print("PostgreSQL, two replicas:")
            await replicas(cluster.create_database(), 20 if args.quick else 100)
        await asyncio.to_thread(join_over_http, 3 if args.quick else 10)
        return
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
