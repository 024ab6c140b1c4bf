"""Layer cache on a fresh engine: a new commit of a repository rebuilt on an engine that never saw it.

A repository whose Dockerfile has an expensive step (`RUN sleep 20`) before a cheap per-commit one.
Commit 1 is built through the service on the world's engine (engine A) and pushed. Commit 2 is then
built through the service on a FRESH engine B (own data root, socket and bridge; the base image only in
the registry): with the layer cache it imports commit 1's inline cache and skips the expensive step.
For comparison, the same commit is built cold on another fresh engine with the layer cache off.

    .venv/bin/python bench/layer_cache.py [--sleep 20]

Prints the times and the ratio (target: rebuild <= 0.1 x cold).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
from tests.support.engines import fresh_engine, push_base_image
from tests.support.gitserve import commit, make_repo, serve_git_daemon

from binder_service.settings import Settings


def settings(prefix: str, docker_host: str, **kw: object) -> Settings:
    return Settings(
        registry_url=f"http://{c.REGISTRY}",
        image_prefix=prefix,
        docker_host=docker_host,
        allow_private_networks=True,
        build_timeout=900.0,
        **kw,  # type: ignore[arg-type]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sleep", type=int, default=20, help="seconds the expensive step takes")
    args = parser.parse_args()
    world = c.world_up()
    base = push_base_image(c.REGISTRY)
    work = Path(f"/tmp/bench-lc-{uuid.uuid4().hex[:6]}")
    (work / "git").mkdir(parents=True)
    name = f"lc-{uuid.uuid4().hex[:8]}"
    dockerfile = (
        f"FROM {base}\nARG NB_USER\nARG NB_UID\n"
        f"RUN sleep {args.sleep} && date +%s%N > /stamp && echo {name}\n"
        "COPY step.txt /step.txt\n"
    )
    make_repo(work / "git", name, {"Dockerfile": dockerfile, "step.txt": "1"})
    prefix = f"bench-lc-{uuid.uuid4().hex[:6]}/"
    try:
        with serve_git_daemon(work / "git") as git_url:
            c.log("commit 1 on engine A (the world's)")
            first, _ = c.timed_build(settings(prefix, world["DOCKER_HOST"]), git_url + name)
            commit(work / "git" / name, {"step.txt": "2"})

            c.log("commit 2 on fresh engine B, layer cache on")
            (work / "b").mkdir()
            with fresh_engine(work / "b") as engine_b:
                rebuild, messages = c.timed_build(settings(prefix, engine_b), git_url + name)
            reused = any(m.startswith("Reusing layers of") for m in messages)

            c.log("commit 2 cold on another fresh engine, layer cache off")
            (work / "c").mkdir()
            with fresh_engine(work / "c") as engine_c:
                cold_prefix = f"bench-lc-cold-{uuid.uuid4().hex[:6]}/"
                cold, _ = c.timed_build(settings(cold_prefix, engine_c, layer_cache=False), git_url + name)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"# layer cache on a fresh engine ({c.describe_src()}; expensive step: sleep {args.sleep})")
    print(f"commit 1 on engine A (base image local):        {first:6.2f} s")
    print(f"commit 2 on fresh engine B, layer cache:        {rebuild:6.2f} s  (reused layers: {reused})")
    print(f"commit 2 cold on a fresh engine, no cache:      {cold:6.2f} s")
    print(f"rebuild / cold:                                 {rebuild / cold:6.3f} x  (target <= 0.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
