"""Fan-out memory: 1,000 concurrent subscribers on one build (900 BinderHub streams, 100 native).

A real `binder-service serve` process builds a repository whose Dockerfile prints a line every 20 ms
(`--lines`, default 600: each one an event); every subscriber reads its stream to the end. It prints the
service's RSS right after it started (idle), before the subscribers connect (after a warm-up build), its
peak while they are connected, and 5, 10 and 30 s after they are gone, with the CPU time the service spent
per delivered event, and checks that every stream got every event the build emitted.

Growth is shown against both: idle right after start (what an operator sees: issue 16's "+34 MB") and the
baseline after the warm-up build (this script's older figure: the warm-up build's own growth excluded).
Targets (issue 9, 16): growth at the peak <= 50 MB for 1,000 subscribers; <= +20 MB above idle 5 s after.

    .venv/bin/python bench/fanout.py [--binderhub 900] [--native 100] [--lines 600] [--after 5,10,30]
        [--service-env KEY=VALUE] [--record]
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
import figures
from tests.support.repos import buildable_repo


async def subscriber(host: str, port: int, target: str, linger: float = 0.0) -> tuple[int, str]:
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
        await asyncio.sleep(linger)  # a keep-alive client (a browser, httpx's pool) closes it later
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
    parser.add_argument(
        "--linger",
        type=float,
        default=0.0,
        help="seconds each subscriber keeps its connection open after its stream ended (keep-alive clients)",
    )
    parser.add_argument("--after", default="5,10,30", help="seconds after the burst to read the RSS at")
    parser.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--record", action="store_true", help="write the figures to bench/recorded.json")
    args = parser.parse_args()
    marks = sorted(float(x) for x in args.after.split(","))
    extra = dict(kv.split("=", 1) for kv in args.service_env)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the service inherits it: 1,000+ sockets
    c.world_up()
    run = f"for i in $(seq 1 {args.lines}); do echo fanout-line-$i; sleep 0.02; done"
    with c.git_world() as (root, git), c.Service(prefix=f"bench-fanout-{c.run_id()}/", env=extra) as service:
        await asyncio.sleep(1)
        idle = c.rss_mib(service.pid)  # right after start, as an operator sees it
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
                subscriber("127.0.0.1", service.port, c.binderhub_path(repo, commit), args.linger)
                for _ in range(args.binderhub)
            ] + [
                subscriber("127.0.0.1", service.port, f"/api/v1/builds/{build['id']}/events", args.linger)
                for _ in range(args.native)
            ]
            results = await asyncio.gather(*streams)
        elapsed = time.monotonic() - t0 - args.linger  # to the build's end
        cpu = c.own_cpu(service.pid) - cpu0
        after: dict[float, float] = {}
        for mark in marks:  # the streams' tasks and buffers are released, the heap trimmed
            await asyncio.sleep(max(mark - (time.monotonic() - t0 - elapsed), 0))
            after[mark] = c.rss_mib(service.pid)
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
                ["RSS idle right after start (MiB)", f"{idle:.1f}"],
                ["RSS baseline, after the warm-up build (MiB)", f"{baseline:.1f}  (+{baseline - idle:.1f})"],
                [
                    "RSS peak (MiB)",
                    f"{rss.peak:.1f}  (+{rss.peak - idle:.1f} idle, +{rss.peak - baseline:.1f} base)",
                ],
                *(
                    [f"RSS {m:g} s after (MiB)", f"{v:.1f}  (+{v - idle:.1f} idle, +{v - baseline:.1f} base)"]
                    for m, v in after.items()
                ),
                ["service CPU (s)", f"{cpu:.2f}"],
                ["service CPU per delivered event (µs)", f"{cpu / max(delivered, 1) * 1e6:.1f}"],
            ],
        )
    )
    print(
        c.describe_src() + (f"; service environment additions: {' '.join(args.service_env)}" if extra else "")
    )
    first = after[marks[0]] if marks else float("nan")
    figs = [
        figures.Figure("idle RSS right after start", idle, "MiB"),
        figures.Figure("RSS growth over the warm-up build", baseline - idle, "MiB"),
        figures.Figure("RSS peak above idle", rss.peak - idle, "MiB"),
        figures.Figure(
            f"RSS above idle {marks[0]:g} s after" if marks else "RSS above idle after", first - idle, "MiB"
        ),
        *(
            figures.Figure(f"RSS above idle {m:g} s after", v - idle, "MiB")
            for m, v in after.items()
            if m != marks[0]
        ),
        figures.Figure("service CPU per delivered event", cpu / max(delivered, 1) * 1e6, "µs"),
    ]
    print()
    print(
        figures.report(
            f"fanout {args.binderhub}+{args.native}x{args.lines}"
            + (f" linger {args.linger:g}s" if args.linger else ""),
            figs,
            record=args.record,
        )
    )
    return 0 if ready == complete == subscribers else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
