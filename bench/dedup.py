"""Deduplication: N (default 200) concurrent identical requests for a commit nobody built yet.

All N BinderHub event streams (GET /build/git/<url>/<branch>?build_only=true) are opened on
pre-connected sockets and sent at once. Then it counts how many repo2docker builds ran, three ways:

  * the service's own metric `binder_builds_started_total` (before/after);
  * a wrapper set as BINDER_SERVICE_REPO2DOCKER_COMMAND that appends a line to a file for every
    invocation and then execs the real repo2docker (independent of the service's bookkeeping);
  * clones seen by the git server: ref advertisements asked by anything but the service's resolver
    (repo2docker's `git clone` over smart HTTP).

and how many of the N streams ended `ready` with the same imageName, how many saw the build's own
log line, plus time to first event and to `ready`, the service's CPU and RSS while N streams are open.

    .venv/bin/python bench/dedup.py [--requests 200] [--sleep 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
from tests.support.repos import buildable_repo


def write_wrapper(directory: Path, calls: Path) -> Path:
    wrapper = directory / "repo2docker-counting"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# bench/dedup.py: one line per repo2docker run, then the real one\n"
        f'echo "$$ $(date +%s.%N) $*" >> {calls}\n'
        f'exec {c.VENV_BIN / "repo2docker"} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return wrapper


async def one_stream(conn: c.RawConn, target: str, t0: float) -> dict[str, object]:
    """Send the request; collect phases, first-event and ready times (relative to t0)."""
    first: float | None = None
    phases: list[str] = []
    messages: list[dict[str, object]] = []
    assert conn.writer is not None
    assert conn.reader is not None
    head = f"GET {target} HTTP/1.1\r\nHost: {conn.host}:{conn.port}\r\nAccept: text/event-stream\r\n\r\n"
    conn.writer.write(head.encode())
    r = conn.reader
    status = int((await r.readline()).split()[1])
    while (await r.readline()) not in (b"\r\n", b"\n", b""):
        pass
    buf = b""
    ready_at = None
    while True:
        size = int((await r.readline()).split(b";")[0], 16)
        if size == 0:
            await r.readline()
            break
        buf += (await r.readexactly(size + 2))[:-2].replace(b"\r\n", b"\n")
        while b"\n\n" in buf:
            block, _, buf = buf.partition(b"\n\n")
            for line in block.splitlines():
                if line.startswith(b"data:"):
                    msg = json.loads(line[5:])
                    messages.append(msg)
                    phases.append(str(msg.get("phase")))
                    if first is None:
                        first = time.perf_counter() - t0
                    if msg.get("phase") == "ready":
                        ready_at = time.perf_counter() - t0
    final = messages[-1] if messages else {}
    return {
        "status": status,
        "first": first,
        "ready": ready_at,
        "phase": final.get("phase"),
        "image": final.get("imageName"),
        "phases": phases,
        "saw_log": any("bench-dedup-marker" in str(m.get("message", "")) for m in messages),
        "events": len(messages),
    }


async def main_async(args: argparse.Namespace) -> int:
    c.world_up()
    with (
        tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp,
        c.git_world(daemon_max_connections=0, backlog=1024) as (root, git),
    ):
        calls = Path(tmp) / "repo2docker-calls.log"
        calls.touch()
        wrapper = write_wrapper(Path(tmp), calls)
        name, commit = buildable_repo(
            root, prefix="dedup", run=f"sleep {args.sleep} && echo bench-dedup-marker > /dedup.txt"
        )
        url = git.url(args.proto, name)
        target = c.binderhub_path(url, "main")
        svc = c.Service(
            prefix=f"bench-{c.run_id()}/", env={"BINDER_SERVICE_REPO2DOCKER_COMMAND": str(wrapper)}
        )
        with svc:
            await asyncio.sleep(1.0)
            idle_rss = c.rss_mib(svc.pid)
            started0 = svc.metric("binder_builds_started_total")
            hits0 = svc.metric("binder_image_cache_hits_total")
            clones0 = git.http_counts()["clones"] if args.proto == "http" else None
            conns = [c.RawConn("127.0.0.1", svc.port) for _ in range(args.requests)]
            await asyncio.gather(*(x._connect() for x in conns))
            c.log(f"{args.requests} connections open; sending {args.requests} identical requests at once")
            own0 = c.own_cpu(svc.pid)
            with c.RssSampler(svc.pid, 0.02) as rss, c.CpuWindow({"svc": svc.pid}) as cpu:
                t0 = time.perf_counter()
                results = await asyncio.gather(
                    *(one_stream(x, target, t0) for x in conns), return_exceptions=True
                )
                wall = time.perf_counter() - t0
            own = c.own_cpu(svc.pid) - own0
            for x in conns:
                x.close()
            await asyncio.sleep(0.5)
            started1 = svc.metric("binder_builds_started_total")
            hits1 = svc.metric("binder_image_cache_hits_total")
            clones = git.http_counts()["clones"] - clones0 if clones0 is not None else None
            wrapper_runs = [line for line in calls.read_text().splitlines() if line.strip()]

            # The same again: now the image exists, all N are answered from the registry lookup cache.
            conns = [c.RawConn("127.0.0.1", svc.port) for _ in range(args.requests)]
            await asyncio.gather(*(x._connect() for x in conns))
            t1 = time.perf_counter()
            again = await asyncio.gather(*(one_stream(x, target, t1) for x in conns), return_exceptions=True)
            wall_again = time.perf_counter() - t1
            for x in conns:
                x.close()
            started2 = svc.metric("binder_builds_started_total")
            final_rss = c.rss_mib(svc.pid)

    ok = [r for r in results if isinstance(r, dict)]
    failures = [r for r in results if not isinstance(r, dict)]
    ready = [r for r in ok if r["phase"] == "ready"]
    images = collections.Counter(str(r["image"]) for r in ready)
    readies = [float(r["ready"]) for r in ready if r["ready"] is not None]  # type: ignore[arg-type]
    firsts = [float(r["first"]) for r in ok if r["first"] is not None]  # type: ignore[arg-type]
    again_ok = [r for r in again if isinstance(r, dict) and r["phase"] == "ready"]
    again_ready = [float(r["ready"]) for r in again_ok if r["ready"] is not None]  # type: ignore[arg-type]

    print()
    print(f"== dedup: {args.requests} concurrent identical BinderHub requests for a new commit ==")
    print(c.describe_src())
    print(f"repository: {url} @ main = {commit[:12]} (Dockerfile RUN sleeps {args.sleep} s)")
    print()
    nan = float("nan")
    events = [float(r["events"]) for r in ok]  # type: ignore[arg-type]
    bad_status = sum(r["status"] != 200 for r in ok)
    saw_log = sum(bool(r["saw_log"]) for r in ok)
    first_p = f"{c.ms(c.percentile(firsts, 0.5))} / {c.ms(c.percentile(firsts, 0.99))}"
    ready_p = f"{min(readies, default=nan):.2f} / {c.percentile(readies, 0.5):.2f}"
    again_p = f"{c.ms(c.percentile(again_ready, 0.5))} / {c.ms(max(again_ready, default=nan))}"
    rows = [
        ["builds started (metric binder_builds_started_total delta)", f"{started1 - started0:g}"],
        ["repo2docker invocations (counting wrapper)", str(len(wrapper_runs))],
        [
            "clones seen by the git server (non-service info/refs)",
            "n/a (git://)" if clones is None else str(clones),
        ],
        ["requests answered by an existing image (cache hits delta)", f"{hits1 - hits0:g}"],
        ["streams ended `ready`", f"{len(ready)} / {args.requests}"],
        ["distinct imageName among them", str(len(images))],
        ["streams with HTTP status != 200 / transport errors", f"{bad_status} / {len(failures)}"],
        ["streams that saw the build's own log line", f"{saw_log} / {args.requests}"],
        [
            "events per stream min / median / max",
            f"{min(events, default=0):g} / {c.median(events):g} / {max(events, default=0):g}",
        ],
        ["time to first event p50 / p99 / max (ms)", f"{first_p} / {c.ms(max(firsts, default=nan))}"],
        ["time to ready min / p50 / max (s)", f"{ready_p} / {max(readies, default=nan):.2f}"],
        [
            "spread of ready across streams (max - min, ms)",
            c.ms(max(readies, default=0) - min(readies, default=0)),
        ],
        ["wall time for all streams (s)", f"{wall:.2f}"],
        ["service process CPU during it (s)", f"{own:.2f}"],
        [
            "repo2docker + children CPU (s; the image build itself runs in dockerd)",
            f"{cpu.used['svc'] - own:.2f}",
        ],
        [
            "service RSS idle / peak with streams open / after (MiB)",
            f"{idle_rss:.1f} / {rss.peak:.1f} / {final_rss:.1f}",
        ],
        [
            "again (image now exists): streams ready, builds started",
            f"{len(again_ok)} / {args.requests}, {started2 - started1:g}",
        ],
        ["  time to ready p50 / max (ms); wall (s)", f"{again_p}; {wall_again:.2f}"],
    ]
    print(c.table(["figure", "value"], rows))
    if images:
        print(f"\nimageName: {images.most_common(1)[0][0]}")
    if failures:
        print(f"first transport error: {failures[0]!r}")
    for line in wrapper_runs:
        print(f"repo2docker run: {line[:160]}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--sleep", type=float, default=3.0, help="seconds the Dockerfile's RUN step sleeps")
    p.add_argument("--proto", default="http", choices=["http", "git"], help="how the repository is served")
    args = p.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
