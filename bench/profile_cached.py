"""Where the service's CPU goes on the cached path: py-spy samples the running `binder-service serve`
process while the load client keeps it busy (image in the registry, a branch resolved per request).

Prints, per protocol: requests/s and service CPU per request during the sampled window, then the
service's samples that hold the GIL (`py-spy --gil`: Python actually running; idle threads and the
event loop's epoll wait are left out), broken down four ways: by package of the leaf frame; as a
partition by owning component (generic libraries such as asyncio/anyio count for their caller); by
selected operations (inclusive); and the top functions by self time. Raw stacks are kept in the
output directory (collapsed format; feed them to flamegraph.pl or speedscope if wanted).

py-spy is not a project dependency: it is looked up on PATH, then in /tmp/pyspy/bin (install with
`python -m pip install --target /tmp/pyspy py-spy`). Needs ptrace rights over the service (root, or
kernel.yama.ptrace_scope=0).

    .venv/bin/python bench/profile_cached.py [--protos git,http] [--api binderhub] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
from cached_path import BRANCHES, Bench
from tests.support.gitserve import branch
from tests.support.repos import buildable_repo

# Operations whose inclusive share is shown: (label, regex on "function (file:line)" frames).
OPERATIONS = [
    (
        "fastapi: sync dependencies sent to worker threads",
        r"(run_in_threadpool|run_sync_in_worker_thread) \(",
    ),
    ("GitRemote._list_refs (ref resolution, its own task)", r"GitRemote\._list_refs \("),
    ("  git:// socket I/O and parsing (daemon.py)", r"list_refs \(binder_service/providers/git/daemon"),
    ("  smart HTTP via httpx (smart_http.list_refs)", r"list_refs \(binder_service/providers/git/smart_http"),
    ("httpx / httpcore / h11 (any)", r"\((httpx|httpcore|h11)/"),
    ("imports at run time (importlib, e.g. a failing `import`)", r"<frozen importlib"),
    ("sse_starlette (any, incl. our event generator)", r"\(sse_starlette/"),
    ("BuildManager.request (a Build per cached answer)", r"BuildManager\.request \("),
    ("  BuildManager._trim (history bound)", r"BuildManager\._trim \("),
    ("Build.follow / emit (event fan-out)", r"Build\.(follow|emit|_wake) \("),
    ("logging (uvicorn access log + service log)", r"\(logging/"),
    ("json encode/decode", r"\(json/"),
    ("pydantic (validation/serialisation)", r"\(pydantic"),
    ("prometheus_client", r"\(prometheus_client/"),
]


# Partition: each sample goes to the nearest frame (from the leaf up) owned by one of these components;
# frames of generic libraries (asyncio, anyio, contextlib, threading, ...) count for their caller.
SPECIAL = [
    (
        "fastapi: sync dependencies via run_in_threadpool",
        re.compile(r"(run_in_threadpool|run_sync_in_worker_thread) \("),
    ),
    ("imports at run time (importlib)", re.compile(r"<frozen importlib")),
]
COMPONENTS = [
    (
        "binder_service: ref resolution (providers/git)",
        re.compile(r"\(binder_service/providers/git/"),
    ),
    ("binder_service: other modules", re.compile(r"\(binder_service/")),
    ("httpx/httpcore/h11 (outgoing HTTP)", re.compile(r"\((httpx|httpcore|h11)/")),
    ("logging", re.compile(r"\(logging/")),
    ("json", re.compile(r"\(json/")),
    ("pydantic", re.compile(r"\(pydantic")),
    ("prometheus_client", re.compile(r"\(prometheus_client/")),
    ("sse_starlette (SSE response, ping task, disconnect watch)", re.compile(r"\(sse_starlette/")),
    ("fastapi (routing, dependencies, validation)", re.compile(r"\(fastapi/")),
    ("starlette (routing, middleware, responses)", re.compile(r"\(starlette/")),
    ("uvicorn (HTTP protocol, ASGI glue)", re.compile(r"\(uvicorn/")),
]


def attribute(frames: list[str]) -> str:
    if frames[-1].startswith("Runner.run (asyncio/runners.py"):
        return "event loop itself (uvloop C code: socket I/O, callbacks)"
    for name, rx in SPECIAL:
        if any(rx.search(f) for f in frames):
            return name
    for frame in reversed(frames):
        for name, rx in COMPONENTS:
            if rx.search(frame):
                return name
    return "other: " + package_of(frames[-1])


def find_pyspy() -> str | None:
    return shutil.which("py-spy") or next((p for p in ("/tmp/pyspy/bin/py-spy",) if Path(p).exists()), None)


def package_of(frame: str) -> str:
    """py-spy shows module-relative paths: binder_service/... keeps its module, others their top package."""
    m = re.search(r"\((.*):\d+\)$", frame)
    path = m.group(1) if m else frame
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = (
                path.split(marker, 1)[1].split("/", 1)[-1]
                if marker.startswith("/lib")
                else path.split(marker, 1)[1]
            )
    if path.startswith("binder_service/"):
        return path.removesuffix(".py").replace("/", ".")
    return path.split("/", 1)[0].removesuffix(".py")


def analyze(raw: Path, label: str, top: int = 25) -> None:
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    total = sum(n for _, n in stacks)
    if not total:
        print(f"{label}: no samples")
        return
    by_pkg: collections.Counter[str] = collections.Counter()
    by_self: collections.Counter[str] = collections.Counter()
    for frames, n in stacks:
        leaf = frames[-1]
        by_pkg[package_of(leaf)] += n
        by_self[re.sub(r":\d+\)$", ")", leaf)] += n
    print(f"\n-- {label}: {total} on-CPU samples of the service --")
    print("\nself time by package (leaf frame):")
    print(c.table(["package", "%"], [[k, f"{v / total * 100:.1f}"] for k, v in by_pkg.most_common(15)]))
    parts: collections.Counter[str] = collections.Counter()
    for frames, n in stacks:
        parts[attribute(frames)] += n
    print(
        "\nwhere the time goes (partition: nearest owning component; generic libraries count for their"
        " caller):"
    )
    print(c.table(["component", "%"], [[k, f"{v / total * 100:.1f}"] for k, v in parts.most_common()]))
    print("\ninclusive share of selected operations (a sample counts for each one on its stack; work done in")
    print(
        "a task of its own, like the SSE stream or the shared ref lookup, is not under the request's frames):"
    )
    rows = []
    for name, pattern in OPERATIONS:
        rx = re.compile(pattern)
        n = sum(count for frames, count in stacks if any(rx.search(f) for f in frames))
        rows.append([name, f"{n / total * 100:.1f}"])
    print(c.table(["operation", "%"], rows))
    print(f"\ntop {top} functions by self time:")
    print(
        c.table(
            ["function (file)", "%"],
            [[k[-110:], f"{v / total * 100:.1f}"] for k, v in by_self.most_common(top)],
        )
    )


async def main_async(args: argparse.Namespace) -> int:
    pyspy = find_pyspy()
    if pyspy is None:
        print("py-spy not found: python -m pip install --target /tmp/pyspy py-spy", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    c.world_up()
    with c.git_world(daemon_max_connections=0, backlog=1024) as (root, git):
        name, _ = buildable_repo(root, prefix="profile")
        for i in range(BRANCHES):
            branch(root / name, f"w{i}")
        repos = {"git": git.url("git", name), "http": git.url("http", name)}
        extra = dict(kv.split("=", 1) for kv in args.service_env)
        with c.Service(prefix=f"bench-{c.run_id()}/", env=extra) as svc:
            bench = Bench(argparse.Namespace(warmup=100), svc, git, repos)
            for proto in args.protos.split(","):
                conn = c.RawConn("127.0.0.1", svc.port)
                reply = await conn.request("GET", c.binderhub_path(repos[proto], "main"), sse=True)
                conn.close()
                bench.images[proto] = c.last_sse(reply.body)["imageName"]
            print(
                c.describe_src()
                + (
                    f"; service environment additions: {' '.join(args.service_env)}"
                    if args.service_env
                    else ""
                )
            )
            for proto in args.protos.split(","):
                conns, _ = await bench.conns("raw", args.concurrency)
                make, check = bench.request_maker(args.api, proto, False), bench.checker(args.api, proto)
                await c.run_load(conns, 200, make, check)  # warm-up
                raw = out / f"{args.api}-{proto}-c{args.concurrency}.txt"
                spy = subprocess.Popen(
                    [pyspy, "record", "--pid", str(svc.pid), "--format", "raw", "--gil",
                     "--rate", str(args.rate),
                     "--duration", str(args.seconds), "--output", str(raw)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
                await asyncio.sleep(0.5)  # py-spy attaches
                with c.CpuWindow({"svc": svc.pid}) as cpu:
                    result = await c.run_load(
                        conns, 10**9, make, check, until=time.perf_counter() + args.seconds - 1
                    )
                _, err = await asyncio.to_thread(spy.communicate)
                for x in conns:
                    x.close()
                done = len(result.latencies) + result.errors
                print(
                    f"\n== {args.api} / {proto} / c={args.concurrency}: {done} requests, "
                    f"{result.rps:.0f} req/s, p50 {result.pct(0.5) * 1000:.1f} ms, "
                    f"service CPU {cpu.used['svc'] / max(done, 1) * 1000:.2f} ms/request, "
                    f"errors {result.errors}, machine busy {cpu.busy * 100:.0f}% "
                    f"(other work {cpu.other * 100:.0f}%) =="
                )
                if spy.returncode != 0 or not raw.exists():
                    print(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
                    continue
                analyze(raw, f"{args.api}/{proto}")
                print(f"\nraw stacks: {raw}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protos", default="git,http")
    p.add_argument("--api", default="binderhub", choices=["binderhub", "native"])
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--out", help="directory for the raw stacks (default: a temp dir)")
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service (repeatable), e.g. PYTHONPATH=<patched copy of the package>",
    )
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
