"""The two build engines side by side: cold builds and rebuilds of a new commit on fresh storage.

The same repositories, built through the service with BINDER_SERVICE_ENGINE=docker and =buildah in one run.
Each Dockerfile has an expensive step (`RUN sleep N`) before a cheap per-commit `COPY`:

- `plain`: FROM, RUN, COPY;
- `arg`: FROM, `ARG NB_USER`, RUN, COPY (a Docker-buildpack repository declaring repo2docker's build args).

Per engine and repository: commit 1 cold on fresh storage (docker: an empty engine of its own; buildah: an
empty state directory), then commit 2 on *other* fresh storage with the registry layer cache (the <= 0.1x
goal), and, for buildah, commit 2 on commit 1's storage (its per-repository local storage). Last, the
raw `repo2docker --engine buildah` command on fresh storage against the same build through the service.
Base images only in the registry.

    .venv/bin/python bench/engines.py [--sleep 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
from tests.support.engines import fresh_engine, push_base_image
from tests.support.gitserve import commit, make_repo, serve_git_daemon

from binder_service.builds.r2d_args import r2d_config
from binder_service.settings import Settings


def settings(
    engine: str, prefix: str, state: Path, docker_host: str = "unix:///nonexistent.sock"
) -> Settings:
    return Settings(
        engine=engine,
        registry_url=f"http://{c.REGISTRY}",
        image_prefix=prefix,
        docker_host=docker_host,
        state_dir=state,
        allow_private_networks=True,
        build_timeout=900.0,
    )


@contextlib.contextmanager
def storage(work: Path, engine: str) -> Iterator[tuple[Path, str]]:
    """Fresh storage: a state directory, and for docker an empty engine of its own."""
    state = Path(tempfile.mkdtemp(prefix=f"{engine}-", dir=work))
    if engine == "buildah":
        yield state, "unix:///nonexistent.sock"
        return
    root = Path(tempfile.mkdtemp(prefix="d-", dir="/tmp"))  # unix socket paths stay short
    try:
        with fresh_engine(root) as host:
            yield state, host
    finally:
        shutil.rmtree(root, ignore_errors=True)


def raw_repo2docker(repo: str, image: str, work: Path) -> float:
    """`repo2docker --engine buildah` alone on fresh storage: what the service adds is the difference."""
    root = Path(tempfile.mkdtemp(prefix="raw-", dir=work))
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/g"\nrunroot = "{root}/r"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "oci"}
    r2d = Path(sys.executable).parent / "repo2docker"
    config = root / "r2d_config.py"
    config.write_text(r2d_config("Git"))  # only the git content provider, as the service runs it
    argv = [
        str(r2d),
        "--config",
        str(config),
        "--engine",
        "buildah",
        "--json-logs",
        "--no-run",
        "--push",
        "--user-id",
        "1000",
        "--user-name",
        "jovyan",
        "--image-name",
        image,
        "--ref",
        "main",
        "--",
        repo,
    ]
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=900)
    elapsed = time.perf_counter() - t0
    subprocess.run(["buildah", "rm", "--all"], env=env, check=False, capture_output=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sleep", type=int, default=20, help="seconds the expensive step takes")
    args = parser.parse_args()
    c.world_up()
    base = push_base_image(c.REGISTRY)
    work = Path(f"/tmp/bench-engines-{uuid.uuid4().hex[:6]}")
    (work / "git").mkdir(parents=True)
    results: list[tuple[str, str, str, float, bool]] = []
    try:
        with serve_git_daemon(work / "git") as git_url:
            for engine in ("docker", "buildah"):
                for kind in ("plain", "arg"):
                    name = f"eng-{engine}-{kind}-{uuid.uuid4().hex[:6]}"
                    arg = "ARG NB_USER\n" if kind == "arg" else ""
                    step = f"RUN sleep {args.sleep} && date +%s%N > /stamp && echo {name}\n"
                    dockerfile = f"FROM {base}\n{arg}{step}COPY step.txt /step.txt\n"
                    make_repo(work / "git", name, {"Dockerfile": dockerfile, "step.txt": "1"})
                    prefix = f"bench-eng-{uuid.uuid4().hex[:6]}/"
                    with storage(work, engine) as (state_a, host_a):
                        c.log(f"{engine} {kind}: commit 1, cold, fresh storage")
                        seconds, _ = c.timed_build(settings(engine, prefix, state_a, host_a), git_url + name)
                        results.append((engine, kind, "commit 1, cold", seconds, False))
                        commit(work / "git" / name, {"step.txt": "2"})
                        with storage(work, engine) as (state_b, host_b):
                            c.log(f"{engine} {kind}: commit 2, other fresh storage, registry cache")
                            seconds, messages = c.timed_build(
                                settings(engine, prefix, state_b, host_b), git_url + name
                            )
                            results.append(
                                (
                                    engine,
                                    kind,
                                    "commit 2, fresh storage + registry cache",
                                    seconds,
                                    _reused(messages),
                                )
                            )
                        if engine == "buildah":
                            commit(work / "git" / name, {"step.txt": "3"})
                            c.log(f"{engine} {kind}: commit 3, commit 1's storage")
                            seconds, messages = c.timed_build(
                                settings(engine, prefix, state_a, host_a), git_url + name
                            )
                            results.append(
                                (
                                    engine,
                                    kind,
                                    "commit 3, the repository's own storage",
                                    seconds,
                                    _reused(messages),
                                )
                            )
            name = f"eng-raw-{uuid.uuid4().hex[:6]}"
            make_repo(work / "git", name, {"Dockerfile": f"FROM {base}\nRUN echo {name}\n", "step.txt": "1"})
            c.log("buildah: raw repo2docker vs through the service, fresh storage each")
            raw = raw_repo2docker(git_url + name, f"{c.REGISTRY}/bench-eng-raw/{name}:1", work)
            commit(work / "git" / name, {"step.txt": "2"})
            state = Path(tempfile.mkdtemp(prefix="svc-", dir=work))
            served, _ = c.timed_build(
                settings("buildah", f"bench-eng-{uuid.uuid4().hex[:6]}/", state), git_url + name
            )
    finally:
        for storage_root in work.glob("buildah-*/buildah"):
            subprocess.run(["umount", "-R", "-l", str(storage_root)], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"# build engines side by side ({c.describe_src()}; expensive step: sleep {args.sleep})")
    cold = {(e, k): s for e, k, what, s, _ in results if what.startswith("commit 1")}
    for engine, kind, what, seconds, hit in results:
        ratio = seconds / cold[(engine, kind)]
        print(f"{engine:8} {kind:6} {what:42} {seconds:6.2f} s  {ratio:5.2f} x cold  (registry hit: {hit})")
    print(f"buildah, no expensive step: raw repo2docker {raw:5.2f} s, through the service {served:5.2f} s "
          f"(+{served - raw:4.2f} s)")  # fmt: skip
    return 0


def _reused(messages: list[str]) -> bool:
    """The build reused layers from the registry cache."""
    return any(m.startswith("Reusing layers of") for m in messages)


if __name__ == "__main__":
    sys.exit(main())
