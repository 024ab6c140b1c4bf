"""Build overhead: a real build through the service (request -> `ready`) vs the same repo2docker build
run directly, on fresh commits each time (a unique RUN step, so the engine's layer cache cannot hide
work), alternating service / direct, N runs each (default 5).

Direct run = exactly the command line the service's LocalExecutor builds (the same config file that
restricts content providers to Git, the same environment it passes), timed as a subprocess:

    repo2docker --config <r2d-Git.py> --json-logs --no-run --user-id 1000 --user-name jovyan \\
        --image-name <name> --ref <sha> --push --build-arg BUILDKIT_INLINE_CACHE=1 -- <git url>

For the service, the event timestamps seen by the client split the time into: before repo2docker
starts (resolve + registry lookup + spawn: the `fetching` event), repo2docker's run, and after its
last log line (the service's registry check that the image is there, then `built`/`ready`).

    .venv/bin/python bench/build_overhead.py [--runs 5] [--proto git] [--service-env KEY=VALUE] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import figures
from tests.support.repos import buildable_repo

R2D_CONFIG = """\
from repo2docker.contentproviders import Git
c.Repo2Docker.content_providers = [Git]
"""


def registry_has(image: str) -> bool:
    repo, tag = image.split("/", 1)[1].rsplit(":", 1)
    req = urllib.request.Request(
        f"http://{c.REGISTRY}/v2/{repo}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,"
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 200
    except OSError:
        return False


def direct_env() -> dict[str, str]:
    """What LocalExecutor gives repo2docker: our environment minus BINDER_SERVICE_*, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_SERVICE_", "JUPYTERHUB_"))}
    env |= {
        "DOCKER_HOST": c.world.DOCKER_HOST,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "http:https:git:ssh",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{c.VENV_BIN}:{os.environ.get('PATH', '')}",
    }
    return env


def run_direct(config: Path, image: str, sha: str, url: str, log: Path) -> tuple[float, float]:
    """(seconds from start to exit, seconds from its last output line to its exit)."""
    argv = [
        str(c.VENV_BIN / "repo2docker"), "--config", str(config), "--json-logs", "--no-run",
        "--user-id", "1000", "--user-name", "jovyan", "--image-name", image, "--ref", sha, "--push",
        # as the executor with the layer cache on (the default) and no earlier image of the repository
        "--build-arg", "BUILDKIT_INLINE_CACHE=1",
        "--", url,
    ]  # fmt: skip
    t0 = time.perf_counter()
    last = t0
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=direct_env(), cwd=config.parent,
        )  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:  # as the service reads it: a line at a time
            last = time.perf_counter()
            out.write(line)
        code = proc.wait(900)
    end = time.perf_counter()
    if code != 0:
        raise RuntimeError(f"direct repo2docker failed ({code}); log {log}")
    return end - t0, end - last


async def run_service(svc: c.Service, url: str) -> dict[str, float | str]:
    """Stream one build to the end; seconds since the request for each phase change."""
    conn = c.RawConn("127.0.0.1", svc.port)
    await conn._connect()
    assert conn.writer is not None
    assert conn.reader is not None
    target = c.binderhub_path(url, "main")
    t0 = time.perf_counter()
    conn.writer.write(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{svc.port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    r = conn.reader
    await r.readline()
    while (await r.readline()) not in (b"\r\n", b"\n", b""):
        pass
    marks: dict[str, float | str] = {}
    last_log = 0.0
    buf = b""
    while True:
        size = int((await r.readline()).split(b";")[0], 16)
        if size == 0:
            break
        buf += (await r.readexactly(size + 2))[:-2].replace(b"\r\n", b"\n")
        now = time.perf_counter() - t0
        while b"\n\n" in buf:
            block, _, buf = buf.partition(b"\n\n")
            for line in block.splitlines():
                if not line.startswith(b"data:"):
                    continue
                msg = json.loads(line[5:])
                phase = msg["phase"]
                marks.setdefault(phase, now)
                if phase in ("fetching", "building", "pushing") and msg.get("message", "").strip():
                    last_log = now
                if phase in ("ready", "failed"):
                    marks["image"] = msg.get("imageName", msg.get("message", ""))
    conn.close()
    marks["total"] = time.perf_counter() - t0
    marks["last_log"] = last_log
    if "ready" not in marks:
        raise RuntimeError(f"service build failed: {marks}")
    return marks


async def main_async(args: argparse.Namespace) -> int:
    c.world_up()
    rid = c.run_id()
    rows: list[list[str]] = []
    service_s: list[float] = []
    direct_s: list[float] = []
    before_r2d: list[float] = []
    after_r2d: list[float] = []
    direct_tail: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp,
        c.git_world(backlog=1024) as (root, git),
    ):
        config = Path(tmp) / "r2d-Git.py"
        config.write_text(R2D_CONFIG)
        extra = dict(kv.split("=", 1) for kv in args.service_env)
        with c.Service(prefix=f"bench-{rid}/", env=extra) as svc:
            # One untimed build of each kind first: the first repo2docker start pays a cold cache.
            order = ["warm-service", "warm-direct"] + [
                k for _ in range(args.runs) for k in ("service", "direct")
            ]
            for i, kind in enumerate(order):
                # Alternate which goes first within each pair so drift does not favour one side.
                if kind in ("service", "direct") and (i // 2) % 2 == 0:
                    kind = "direct" if kind == "service" else "service"
                name, sha = buildable_repo(root, prefix=f"ovh{i}", run=args.run)
                url = git.url(args.proto, name)
                if kind.endswith("service"):
                    marks = await run_service(svc, url)
                    seconds = float(marks["total"])
                    image = str(marks["image"])
                    pre = float(marks.get("fetching", 0.0))
                    post = seconds - float(marks["last_log"])
                    detail = (
                        f"before repo2docker {pre * 1000:.0f} ms, after its last line {post * 1000:.0f} ms"
                    )
                    if kind == "service":
                        service_s.append(seconds)
                        before_r2d.append(pre)
                        after_r2d.append(post)
                else:
                    image = f"{c.REGISTRY}/bench-{rid}-direct/{name}:{sha}"
                    seconds, tail = await asyncio.to_thread(
                        run_direct, config, image, sha, url, Path(tmp) / f"{name}.log"
                    )
                    detail = f"its last line -> exit {tail * 1000:.0f} ms"
                    if kind == "direct":
                        direct_s.append(seconds)
                        direct_tail.append(tail)
                pushed = registry_has(image)
                c.log(f"{kind:12} {seconds:6.2f} s  pushed={pushed}  {detail}")
                rows.append([str(i + 1), kind, name, f"{seconds:.2f}", "yes" if pushed else "NO", detail])

    med_s, med_d = c.median(service_s), c.median(direct_s)
    print()
    print(
        f"== build overhead: through the service vs repo2docker directly ({args.runs} fresh commits each) =="
    )
    print(
        c.describe_src()
        + (f"; service environment additions: {' '.join(args.service_env)}" if args.service_env else "")
    )
    print(f"repository over {args.proto}://; Dockerfile FROM busybox, RUN `{args.run} && echo <unique>`")
    print(f"pushed to {c.REGISTRY}")
    print()
    print(c.table(["#", "kind", "repository", "seconds", "in registry", "service timeline"], rows))
    print()

    def stats(values: list[float], digits: int) -> list[str]:
        return [f"{c.median(values):.{digits}f}", f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"]

    summary = [
        ["service: request -> ready", *stats(service_s, 2)],
        ["direct: repo2docker run", *stats(direct_s, 2)],
        ["service - direct", f"{med_s - med_d:+.2f}", "", ""],
        ["  before repo2docker is spawned (resolve, lookup)", *stats(before_r2d, 3)],
        ["  after repo2docker's last line (exit, registry check, ready)", *stats(after_r2d, 3)],
        ["direct: repo2docker's last line -> its exit", *stats(direct_tail, 3)],
        [
            "service's own share after the last line (difference of medians)",
            f"{c.median(after_r2d) - c.median(direct_tail):+.3f}",
            "",
            "",
        ],
    ]
    print(c.table(["seconds (timed runs only)", "median", "min", "max"], summary))
    print(f"\nratio of medians service/direct: {med_s / med_d:.3f}")
    figs = [
        figures.Figure("service: request -> ready (median)", med_s, "s"),
        figures.Figure("direct repo2docker (median)", med_d, "s"),
        figures.Figure("ratio service/direct", med_s / med_d, "x"),
        figures.Figure("before repo2docker is spawned (median)", c.median(before_r2d), "s"),
        figures.Figure("repo2docker's last line -> ready (median)", c.median(after_r2d), "s"),
        figures.Figure("direct: last line -> exit (median)", c.median(direct_tail), "s"),
        figures.Figure(
            "service's own share after the last line", c.median(after_r2d) - c.median(direct_tail), "s"
        ),
    ]
    print()
    print(figures.report("build_overhead", figs, record=args.record))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--proto", default="git", choices=["git", "http"])
    p.add_argument("--run", default="echo hello > /hello.txt", help="the Dockerfile's RUN command")
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--record", action="store_true", help="write the figures to bench/recorded.json")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
