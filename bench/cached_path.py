"""Cached path: request -> `ready` when the image is already in the registry, ref resolved every time.

The service runs as its own process (`binder-service serve`); the git servers run in another
(bench/_gitservers.py); this process is only the load client. One repository is built once through
the service, then requested again and again by *branch*, so every request resolves the branch over
git:// or smart HTTP, finds the image (the "exists" answer is cached by the service) and streams
`built` + `ready` (BinderHub API) or answers 200 `cached: true` (native API).

By default each concurrent worker asks for its own branch (w0..wN, all at the same commit): the
service coalesces concurrent lookups of the *same* (repo, ref), so distinct branches are what makes
ref resolution really happen once per request. `lookups/req` shows how many ref advertisements the
git server actually produced per request (exact for smart HTTP, from TCP accepts for git://).
One extra row per protocol shows all workers on one branch (coalesced).

CPU seconds on this shared virtual machine move with its speed of the moment, by up to 2x over a day.
The load client's own CPU per request moves with them while its work stays the same, so `svc/client CPU`
(the service's CPU in units of the client's) is the figure to compare across sittings, between runs of
the same rows: over one day, one row run alone read 0.92-1.50 ms per request for the same code and
4.2-4.6 as a ratio (the full run's row, after the c=1 rows, reads higher: 5.2-5.5).

Prints one table, the service's RSS (idle, after the first build, peak during load, VmHWM) and which
load client was used (raw asyncio HTTP/1.1 by default; a row with httpx shows its cost).

    .venv/bin/python bench/cached_path.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import figures
from tests.support.gitserve import branch
from tests.support.repos import buildable_repo

BRANCHES = 64


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n1", type=int, default=300, help="requests at concurrency 1")
    p.add_argument("--n", type=int, default=2000, help="requests at each higher concurrency")
    p.add_argument("--concurrency", default="1,20,50")
    p.add_argument("--protos", default="git,http", help="git (git daemon) and/or http (smart HTTP)")
    p.add_argument("--apis", default="binderhub,native")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--no-httpx", action="store_true", help="skip the httpx client comparison rows")
    p.add_argument("--no-coalesced", action="store_true", help="skip the one-branch (coalesced) rows")
    p.add_argument(
        "--stock-git-servers",
        action="store_true",
        help="leave gitserve's servers as they are (listen backlog 5, git daemon --max-connections 32): "
        "shows the test servers' SYN drops (1 s retransmits) instead of the service",
    )
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service (repeatable), e.g. BINDER_SERVICE_REF_CACHE_TTL=5",
    )
    p.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--record", action="store_true", help="write the figures to bench/recorded.json")
    args = p.parse_args()
    if args.quick:
        args.n1, args.n, args.warmup = 50, 300, 30
    return args


class Bench:
    def __init__(
        self, args: argparse.Namespace, svc: c.Service, git: c.GitServers, repos: dict[str, str]
    ) -> None:
        self.args, self.svc, self.git, self.repos = args, svc, git, repos
        self.images: dict[str, str] = {}
        self.rows: list[dict[str, object]] = []
        self.peak_rss = 0.0

    def request_maker(self, api: str, proto: str, coalesced: bool):  # type: ignore[no-untyped-def]
        url = self.repos[proto]
        if api == "binderhub":
            targets = [c.binderhub_path(url, "main" if coalesced else f"w{i}") for i in range(BRANCHES)]
            return lambda i, w: ("GET", targets[w % BRANCHES], None, True)
        bodies = [
            json.dumps({"repo": url, "ref": "main" if coalesced else f"w{i}"}).encode()
            for i in range(BRANCHES)
        ]
        return lambda i, w: ("POST", "/api/v1/builds", bodies[w % BRANCHES], False)

    def checker(self, api: str, proto: str):  # type: ignore[no-untyped-def]
        expected = self.images[proto]
        image = expected.encode()
        if api == "binderhub":

            def check(reply: c.Reply) -> str | None:
                if reply.status != 200:
                    return f"HTTP {reply.status}"
                last = c.last_sse(reply.body)
                if last.get("phase") != "ready" or last.get("imageName") != expected:
                    return f"last event {str(last)[:200]}"
                return None

            return check

        def check_native(reply: c.Reply) -> str | None:
            if reply.status != 200 or b'"cached":true' not in reply.body or image not in reply.body:
                return f"HTTP {reply.status} {reply.body[:200]!r}"
            return None

        return check_native

    async def conns(self, kind: str, n: int):  # type: ignore[no-untyped-def]
        if kind == "raw":
            return [c.RawConn("127.0.0.1", self.svc.port) for _ in range(n)], None
        import httpx

        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8), timeout=60
        )
        return [c.HttpxConn(client, self.svc.url) for _ in range(n)], client

    async def one(
        self, api: str, proto: str, conc: int, n: int, *, client: str = "raw", coalesced: bool = False
    ) -> None:
        conns, closer = await self.conns(client, conc)
        make, check = self.request_maker(api, proto, coalesced), self.checker(api, proto)
        # Warm-up on the same connections (not measured).
        if self.args.warmup:
            await c.run_load(conns, min(self.args.warmup, max(n // 4, conc)), make, check)
        http0 = self.git.http_counts()
        opens0 = c.tcp_passive_opens()
        tcp0 = c.tcp_ext("ListenOverflows", "TCPSynRetrans")
        connects0 = sum(x.connects for x in conns)
        with (
            c.RssSampler(self.svc.pid) as rss,
            c.CpuWindow({"svc": self.svc.pid, "git": self.git.pid}) as cpu,
        ):
            result = await c.run_load(conns, n, make, check)
        tcp1 = c.tcp_ext("ListenOverflows", "TCPSynRetrans")
        if proto == "http":
            http1 = self.git.http_counts()
            lookups = http1["info_refs"] - http0["info_refs"]
            upstream_conns = http1["connections"] - http0["connections"]
        else:  # accepted connections minus the client's own connects to the service (approximate)
            lookups = c.tcp_passive_opens() - opens0 - (sum(x.connects for x in conns) - connects0)
            upstream_conns = lookups  # git:// is one connection per lookup
        for x in conns:
            x.close()
        if closer is not None:
            await closer.aclose()
        self.peak_rss = max(self.peak_rss, rss.peak)
        done = max(len(result.latencies) + result.errors, 1)
        row = {
            "api": api,
            "proto": proto,
            "client": client,
            "refs": "1 branch"
            if coalesced
            else ("1 branch" if conc == 1 else f"{min(conc, BRANCHES)} branches"),
            "c": conc,
            "n": n,
            "ok": len(result.latencies),
            "errors": result.errors,
            "first_error": result.first_error,
            "p50_ms": result.pct(0.5) * 1000,
            "p99_ms": result.pct(0.99) * 1000,
            "max_ms": max(result.latencies, default=float("nan")) * 1000,
            "rps": result.rps,
            "lookups_per_req": lookups / done,
            "upstream_conns_per_req": upstream_conns / done,
            "listen_overflows": tcp1["ListenOverflows"] - tcp0["ListenOverflows"],
            "syn_retrans": tcp1["TCPSynRetrans"] - tcp0["TCPSynRetrans"],
            "svc_cpu_ms_per_req": cpu.used["svc"] / done * 1000,
            "git_cpu_ms_per_req": cpu.used["git"] / done * 1000,
            "client_cpu_ms_per_req": cpu.used["client"] / done * 1000,
            # The client's work per request is the same whatever the service's code: the service's CPU
            # in units of it follows the code, not this machine's speed of the moment (module docstring).
            "svc_per_client_cpu": cpu.used["svc"] / max(cpu.used["client"], 1e-9),
            "machine_busy_pct": cpu.busy * 100,
            "other_cpu_pct": cpu.other * 100,
            "rss_peak_mib": rss.peak,
        }
        self.rows.append(row)
        c.log(
            f"{api:9} {proto:4} {client:5} c={conc:<3} n={n:<5} p50={row['p50_ms']:.1f}ms "
            f"p99={row['p99_ms']:.1f}ms {row['rps']:.0f} req/s errors={result.errors}"
            + (f" ({result.first_error})" if result.first_error else "")
        )


async def main_async(args: argparse.Namespace) -> int:
    c.world_up()
    conc_levels = [int(x) for x in args.concurrency.split(",")]
    stock = args.stock_git_servers
    with c.git_world(daemon_max_connections=None if stock else 0, backlog=0 if stock else 1024) as (
        root,
        git,
    ):
        name, commit = buildable_repo(root, prefix="cached")
        for i in range(BRANCHES):
            branch(root / name, f"w{i}")
        repos = {"git": git.url("git", name), "http": git.url("http", name)}
        extra = dict(kv.split("=", 1) for kv in args.service_env)
        svc = c.Service(prefix=f"bench-{c.run_id()}/", env=extra)
        c.log("starting binder-service serve (separate process)")
        with svc:
            await asyncio.sleep(2.0)
            idle_rss = c.rss_mib(svc.pid)
            bench = Bench(args, svc, git, repos)

            # Build the image once per repository URL (the URL is part of the image name).
            build_s: dict[str, float] = {}
            for proto in args.protos.split(","):
                t0 = time.perf_counter()
                conn = c.RawConn("127.0.0.1", svc.port)
                reply = await conn.request("GET", c.binderhub_path(repos[proto], "main"), sse=True)
                conn.close()
                last = c.last_sse(reply.body)
                if last.get("phase") != "ready" or not last["imageName"].endswith(commit):
                    print(f"first build failed: {last}", file=sys.stderr)
                    return 1
                bench.images[proto] = last["imageName"]
                build_s[proto] = time.perf_counter() - t0
                c.log(f"built {last['imageName']} in {build_s[proto]:.1f}s")
            after_build_rss = c.rss_mib(svc.pid)
            c.log(f"idle RSS {idle_rss:.1f} MiB, after builds {after_build_rss:.1f} MiB")

            for api in args.apis.split(","):
                for proto in args.protos.split(","):
                    for conc in conc_levels:
                        await bench.one(api, proto, conc, args.n1 if conc == 1 else args.n)
                    if not args.no_coalesced:
                        await bench.one(api, proto, max(conc_levels), args.n, coalesced=True)
            if not args.no_httpx:
                top = max(conc_levels)
                for conc in sorted({1, top}):
                    await bench.one(
                        "binderhub", "git", conc, args.n1 if conc == 1 else args.n, client="httpx"
                    )
            await asyncio.sleep(1.0)
            final_rss, hwm = c.rss_mib(svc.pid), c.hwm_mib(svc.pid)
            ran = len(json.loads((await _get(svc, "/api/v1/builds?limit=1000")).body).get("builds", []))
            listed = (await _get(svc, "/api/v1/builds?limit=1000&cached=true")).body
            with_cached = len(json.loads(listed).get("builds", [])) if listed.startswith(b"{") else -1
            history = f"{ran} builds that ran, {with_cached} records including cached answers"

    print_report(args, bench, idle_rss, after_build_rss, final_rss, hwm, build_s, history)
    if args.json:
        args.json.write_text(json.dumps(bench.rows, indent=1))
    return 0


async def _get(svc: c.Service, target: str) -> c.Reply:
    conn = c.RawConn("127.0.0.1", svc.port)
    try:
        return await conn.request("GET", target)
    finally:
        conn.close()


def print_report(
    args: argparse.Namespace,
    bench: Bench,
    idle: float,
    after_build: float,
    final: float,
    hwm: float,
    build_s: dict[str, float],
    history: str,
) -> None:
    columns = [
        ("api", lambda r: str(r["api"])),
        ("proto", lambda r: str(r["proto"])),
        ("client", lambda r: str(r["client"])),
        ("refs", lambda r: str(r["refs"])),
        ("c", lambda r: str(r["c"])),
        ("n", lambda r: str(r["n"])),
        ("err", lambda r: str(r["errors"])),
        ("p50 ms", lambda r: f"{r['p50_ms']:.1f}"),
        ("p99 ms", lambda r: f"{r['p99_ms']:.1f}"),
        ("max ms", lambda r: f"{r['max_ms']:.1f}"),
        ("req/s", lambda r: f"{r['rps']:.0f}"),
        ("lookups/req", lambda r: f"{r['lookups_per_req']:.2f}"),
        ("git conns/req", lambda r: f"{r['upstream_conns_per_req']:.2f}"),
        ("listen ovf", lambda r: str(r["listen_overflows"])),
        ("SYN rtx", lambda r: str(r["syn_retrans"])),
        ("svc CPU ms/req", lambda r: f"{r['svc_cpu_ms_per_req']:.2f}"),
        ("git CPU ms/req", lambda r: f"{r['git_cpu_ms_per_req']:.2f}"),
        ("client CPU ms/req", lambda r: f"{r['client_cpu_ms_per_req']:.2f}"),
        ("svc/client CPU", lambda r: f"{r['svc_per_client_cpu']:.2f}"),
        ("busy %", lambda r: f"{r['machine_busy_pct']:.0f}"),
        ("other %", lambda r: f"{r['other_cpu_pct']:.0f}"),
        ("RSS peak MiB", lambda r: f"{r['rss_peak_mib']:.1f}"),
    ]
    headers = [name for name, _ in columns]
    rows = [[cell(r) for _, cell in columns] for r in bench.rows]
    print()
    print("== cached path: request -> ready, image already in the registry, branch resolved per request ==")
    print(c.describe_src())
    for proto, image in bench.images.items():
        print(f"image ({proto}): {image} (first build through the service: {build_s[proto]:.1f} s)")
    print("binderhub = GET /build/git/<url>/<branch>?build_only=true (SSE to `ready`);")
    print("native    = POST /api/v1/builds {repo, ref} -> 200 cached")
    print("git = git:// (git daemon), http = smart HTTP (git http-backend); raw = asyncio HTTP/1.1 client")
    print(
        "git servers: "
        + (
            "stock gitserve (listen backlog 5, git daemon max 32 connections)"
            if args.stock_git_servers
            else "gitserve with listen backlog raised to 1024 and git daemon --max-connections=0"
        )
    )
    print("lookups/req: ref advertisements served per request (<1: concurrent lookups of one ref shared);")
    print("git conns/req: new TCP connections the service opened to the git server per request;")
    print("listen ovf / SYN rtx: machine-wide listen-queue overflows / SYN retransmits during the row;")
    print("CPU ms/req: CPU of the service process / git servers (incl. children) / this client, per request;")
    print("busy %: whole machine (2 cores); other %: machine CPU not used by those three (other work)")
    if args.service_env:
        print(f"service environment additions: {' '.join(args.service_env)}")
    print()
    print(c.table(headers, rows))
    errors = [r for r in bench.rows if r["errors"]]
    for r in errors:
        print(f"  errors in {r['api']}/{r['proto']}/c={r['c']}: {r['errors']}, first: {r['first_error']}")
    print()
    print("== service memory (VmRSS of the binder-service process) ==")
    print(f"idle after start:            {idle:7.1f} MiB")
    print(f"after the first build:       {after_build:7.1f} MiB")
    print(f"peak sampled during load:    {bench.peak_rss:7.1f} MiB")
    print(f"after load:                  {final:7.1f} MiB")
    print(f"VmHWM (peak since start):    {hwm:7.1f} MiB")
    print(f"build records kept:          {history} (GET /api/v1/builds?limit=1000[&cached=true])")
    total = sum(int(r["n"]) for r in bench.rows)
    print(f"requests measured: {total} (+ warm-ups)")
    print()
    name = "cached_path" + (" --quick" if args.quick else "")
    print(figures.report(name, headline(bench, idle, after_build, hwm), record=args.record))


def headline(bench: Bench, idle: float, after_build: float, hwm: float) -> list[figures.Figure]:
    """The figures kept in bench/recorded.json: memory, and per API and protocol the raw client's rows
    with a branch per worker (c=1: latency; higher c: service CPU per request, p99, throughput)."""
    out = [
        figures.Figure("RSS idle after start", idle, "MiB"),
        figures.Figure("RSS after the first builds", after_build, "MiB"),
        figures.Figure("VmHWM", hwm, "MiB"),
    ]
    for r in bench.rows:
        if r["client"] != "raw" or (r["refs"] == "1 branch" and r["c"] != 1):
            continue
        key = f"{r['api']} {r['proto']} c={r['c']}"
        if r["c"] == 1:
            out.append(figures.Figure(f"{key} p50", float(r["p50_ms"]), "ms"))
        else:
            out += [
                figures.Figure(f"{key} service CPU/req", float(r["svc_cpu_ms_per_req"]), "ms"),
                figures.Figure(f"{key} service CPU / client CPU", float(r["svc_per_client_cpu"]), "x"),
                figures.Figure(f"{key} p99", float(r["p99_ms"]), "ms"),
                figures.Figure(f"{key} req/s", float(r["rps"]), "req/s", better="higher"),
            ]
    return out


def main() -> int:
    return asyncio.run(main_async(parse_args()))


if __name__ == "__main__":
    sys.exit(main())
