"""Instructions per cached request: the service's CPU work on the cached path, counted, not timed.

CPU seconds per request (`cached_path.py`) move by 10-30% on this shared 2-core machine with whatever
else runs; a count of executed instructions does not. Here `binder-service serve` runs under valgrind's
callgrind (`--instr-atstart=no`: start-up runs uninstrumented), the load client sends `--warmup`
requests, then instrumentation is switched on, the counters zeroed, `--n` requests sent and the counters
dumped (`callgrind_control`): instructions executed by the service per request, in Python, the
interpreter and every C library it calls (uvloop, httptools, pydantic-core, the kernel calls' user
side). Same request mix as `cached_path.py`: the BinderHub face or the native one, over git:// with a
branch per worker (a ref advertisement read per request), `--c` workers; `--api versions` gives the
floor every request pays (`GET /versions`: uvicorn, FastAPI, the middleware, the access log).

Only user space is counted: what the kernel does for the service's system calls (the git connection,
the client's socket, the access log's write) is not, nor time lost to the other core's work. Read with
`cached_path.py`'s CPU per request, which holds both (measured once at c = 20 on the BinderHub face:
user 0.72 ms, system 0.16 ms per request).

The image is built once by a service run normally; the valgrind run uses the same build store and finds
the image in the registry. Needs valgrind (Debian package `valgrind`). Takes ~2-4 minutes.

    .venv/bin/python bench/instructions.py [--api binderhub|native] [--n 400] [--c 20] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import figures
from cached_path import BRANCHES
from tests.support.gitserve import branch
from tests.support.repos import buildable_repo

_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.M)


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def dumped_instructions(out_dir: Path) -> int:
    """Instructions in the newest dump of the service's callgrind files."""
    dumps = sorted(out_dir.glob("cg.out*"), key=lambda p: p.stat().st_mtime)
    for dump in reversed(dumps):
        found = _TOTALS.findall(dump.read_text(errors="replace"))
        if found:
            return int(found[-1])
    raise RuntimeError(f"no callgrind totals in {out_dir}")


async def measure(args: argparse.Namespace) -> dict[str, float]:
    c.world_up()
    with c.git_world(daemon_max_connections=0, backlog=1024) as (root, git):
        name, commit = buildable_repo(root, prefix="instr")
        for i in range(BRANCHES):
            branch(root / name, f"w{i}")
        url = git.url("git", name)
        state = tempfile.mkdtemp(prefix="bench-instr-state-")
        out_dir = Path(tempfile.mkdtemp(prefix="bench-callgrind-"))
        try:
            prefix = f"bench-instr-{c.run_id()}/"
            with c.Service(prefix=prefix, state_dir=state) as svc:  # the build, run normally
                conn = c.RawConn("127.0.0.1", svc.port)
                reply = await conn.request("GET", c.binderhub_path(url, "main"), sse=True)
                conn.close()
                last = c.last_sse(reply.body)
                if last.get("phase") != "ready" or not str(last.get("imageName", "")).endswith(commit):
                    raise RuntimeError(f"first build failed: {last}")
            wrapper = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                "--trace-children=no",
                f"--callgrind-out-file={out_dir}/cg.out",
            ]
            # PYTHONMALLOC set here: the service would otherwise re-exec itself (and leave valgrind).
            svc = c.Service(
                prefix=prefix,
                state_dir=state,
                wrapper=wrapper,
                env={"PYTHONMALLOC": args.allocator, **dict(kv.split("=", 1) for kv in args.service_env)},
            )
            c.log("starting the service under callgrind (start-up uninstrumented; ~1 min)")
            svc.start(timeout=600)
            try:
                conns = [c.RawConn("127.0.0.1", svc.port) for _ in range(args.c)]
                image = str(last["imageName"])
                if args.api == "binderhub":
                    targets = [c.binderhub_path(url, f"w{i}") for i in range(BRANCHES)]

                    def make(i: int, w: int) -> tuple[str, str, bytes | None, bool]:
                        return "GET", targets[w % BRANCHES], None, True

                    def check(reply: c.Reply) -> str | None:
                        ok = reply.status == 200 and c.last_sse(reply.body).get("phase") == "ready"
                        return None if ok else f"HTTP {reply.status} {reply.body[-200:]!r}"
                elif args.api == "versions":  # the floor: any request's cost (server, framework, access log)

                    def make(i: int, w: int) -> tuple[str, str, bytes | None, bool]:
                        return "GET", "/versions", None, False

                    def check(reply: c.Reply) -> str | None:
                        return None if reply.status == 200 else f"HTTP {reply.status}"
                else:
                    bodies = [json.dumps({"repo": url, "ref": f"w{i}"}).encode() for i in range(BRANCHES)]

                    def make(i: int, w: int) -> tuple[str, str, bytes | None, bool]:
                        return "POST", "/api/v1/builds", bodies[w % BRANCHES], False

                    def check(reply: c.Reply) -> str | None:
                        ok = reply.status == 200 and image.encode() in reply.body
                        return None if ok else f"HTTP {reply.status} {reply.body[:200]!r}"

                warm = await c.run_load(conns, args.warmup, make, check)
                if warm.errors:
                    raise RuntimeError(f"warm-up failed: {warm.first_error}")
                callgrind(svc.pid, "--instr=on")
                callgrind(svc.pid, "--zero")
                t0 = time.perf_counter()
                result = await c.run_load(conns, args.n, make, check)
                callgrind(svc.pid, "--dump")
                seconds = time.perf_counter() - t0
                for conn in conns:
                    conn.close()
                if result.errors:
                    raise RuntimeError(f"{result.errors} requests failed: {result.first_error}")
                total = dumped_instructions(out_dir)
            finally:
                svc.stop()
        finally:  # also when a step failed: nothing of this run stays behind
            shutil.rmtree(state, ignore_errors=True)
            if args.keep:
                c.log(f"callgrind files kept in {out_dir} (callgrind_annotate <file>)")
            else:
                shutil.rmtree(out_dir, ignore_errors=True)
    per_request = total / args.n
    c.log(f"{args.n} requests in {seconds:.1f} s under callgrind; {total:,} instructions")
    return {"instructions per request": per_request}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api", choices=["binderhub", "native", "versions"], default="binderhub")
    p.add_argument("--n", type=int, default=400, help="measured requests")
    p.add_argument("--c", type=int, default=20, help="concurrent workers (one branch each)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--allocator", default="malloc", help="PYTHONMALLOC for the service (serve's: malloc)")
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--keep", action="store_true", help="keep callgrind's files, for callgrind_annotate")
    p.add_argument("--record", action="store_true", help="write the figures to bench/recorded.json")
    args = p.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    found = asyncio.run(measure(args))
    print(c.describe_src())
    print(f"{args.api}, git://, c={args.c}, {args.n} requests measured after {args.warmup} warm-up requests")
    print(f"instructions per cached request: {found['instructions per request'] / 1e6:.3f} million")
    section = f"instructions_{args.api}_c{args.c}"
    figs = [figures.Figure(k, v, "instructions") for k, v in found.items()]
    print(figures.report(section, figs, record=args.record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
