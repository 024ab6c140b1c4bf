"""Fan-out memory: 1,000 concurrent subscribers on one build (900 BinderHub streams, 100 native).

A real `binder-service serve` process builds a repository whose Dockerfile prints a line every 20 ms
(`--lines`, default 600: each one an event); every subscriber reads its stream to the end. It prints the
service's RSS before the subscribers connect (after a warm-up build), its peak while they are connected,
and after they are gone, with the CPU time the service spent per delivered event, and checks that
every stream got every event the build emitted.

Targets (issue 9): growth at the peak <= 50 MB for 1,000 subscribers; back within 20 MB of the baseline.

    .venv/bin/python bench/fanout.py [--binderhub 900] [--native 100] [--lines 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
from tests.support.repos import buildable_repo


async def subscriber(host: str, port: int, target: str) -> tuple[int, str]:
    """Read one event stream to its end; (messages received, phase of the last one).

    Counts messages in raw chunks rather than parsing each one: a thousand streams read by one Python
    process must keep up with the service, or the figures measure this client's backlog instead."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    count, carry, tail = 0, b"", b""
    try:
        while chunk := await reader.read(1 << 16):
            data = carry + chunk  # a marker split across two reads is counted once, in the second
            count += data.count(b"\ndata: ")
            carry, tail = data[-6:], (tail + chunk)[-4096:]
            if tail.endswith(b"\r\n0\r\n\r\n"):  # the chunked body's end: the stream is over
                break
    finally:
        writer.close()
    last = tail.rpartition(b"data: ")[2].partition(b"\n")[0]
    return count, str(json.loads(last).get("phase", "")) if last.startswith(b"{") else ""


def post(url: str, body: dict[str, str]) -> dict[str, object]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return dict(json.loads(r.read()))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binderhub", type=int, default=900)
    parser.add_argument("--native", type=int, default=100)
    parser.add_argument("--lines", type=int, default=600)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the service inherits it: 1,000+ sockets
    c.world_up()
    run = f"for i in $(seq 1 {args.lines}); do echo fanout-line-$i; sleep 0.02; done"
    with c.git_world() as (root, git), c.Service(prefix=f"bench-fanout-{c.run_id()}/") as service:
        # Warm-up: one build streamed to one client, so every code path is loaded before the baseline.
        warm, warm_commit = buildable_repo(root, prefix="fanout-warm")
        await subscriber("127.0.0.1", service.port, c.binderhub_path(git.url("git", warm), warm_commit))
        await asyncio.sleep(2)
        baseline = c.rss_mib(service.pid)
        name, commit = buildable_repo(root, run=run, prefix="fanout")
        repo = git.url("git", name)
        build = post(service.url + "api/v1/builds", {"repo": repo, "ref": commit})
        cpu0 = c.own_cpu(service.pid)
        t0 = time.monotonic()
        with c.RssSampler(service.pid) as rss:
            streams = [
                subscriber("127.0.0.1", service.port, c.binderhub_path(repo, commit))
                for _ in range(args.binderhub)
            ] + [
                subscriber("127.0.0.1", service.port, f"/api/v1/builds/{build['id']}/events")
                for _ in range(args.native)
            ]
            results = await asyncio.gather(*streams)
        elapsed = time.monotonic() - t0
        cpu = c.own_cpu(service.pid) - cpu0
        await asyncio.sleep(5)  # the streams' tasks and buffers are released
        after = c.rss_mib(service.pid)
        with urllib.request.urlopen(f"{service.url}api/v1/builds/{build['id']}", timeout=30) as r:
            emitted = int(json.loads(r.read())["last_event_id"])  # ids count up from 1, none trimmed here
    delivered = sum(n for n, _ in results)
    ready = sum(last == "ready" for _, last in results)
    complete = sum(n == emitted for n, _ in results)  # every subscriber got every event
    counts = sorted({n for n, _ in results})
    subscribers = args.binderhub + args.native
    print(
        c.table(
            ["figure", "value"],
            [
                ["subscribers (BinderHub + native)", f"{subscribers} ({args.binderhub} + {args.native})"],
                ["streams ending ready", f"{ready} of {subscribers}"],
                ["events per stream (distinct counts)", ", ".join(map(str, counts[:5]))],
                ["streams with every event of the build", f"{complete} of {subscribers} ({emitted} events)"],
                ["events delivered", str(delivered)],
                ["build + stream time (s)", f"{elapsed:.1f}"],
                ["RSS baseline (MiB)", f"{baseline:.1f}"],
                ["RSS peak (MiB)", f"{rss.peak:.1f}  (+{rss.peak - baseline:.1f})"],
                ["RSS after, 5 s later (MiB)", f"{after:.1f}  (+{after - baseline:.1f})"],
                ["service CPU (s)", f"{cpu:.2f}"],
                ["service CPU per delivered event (µs)", f"{cpu / max(delivered, 1) * 1e6:.1f}"],
            ],
        )
    )
    return 0 if ready == complete == subscribers else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
