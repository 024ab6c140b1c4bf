"""Per-build limits with engine buildah on one machine, with real parts: each build runs in a cgroup of its
own (builds/cgroups.py) holding repo2docker, buildah and every RUN step, removed when the build ends."""

from __future__ import annotations

import pwd
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from binder_service.settings import Settings
from tests.support.buildah import (
    build_cgroups_left,
    cgroup_of,
    left_behind,
    native_build,
    processes,
    running,
    service_cgroups,
    start_build,
    stream_until,
)
from tests.support.gitserve import make_repo
from tests.support.waiting import wait_until

pytestmark = pytest.mark.docker

Start = Callable[..., AbstractContextManager[str]]
# A small build takes about 65 MiB here by itself (repo2docker, buildah, the page cache of its layers).
LIMIT = "128MiB"
# `tail -c` keeps what it reads in memory: 300 MiB, against the limit of 128 MiB.
STEP = "RUN head -c {}m /dev/zero | tail -c {}m >/dev/null && echo {}\n"
NOTHING: dict[str, Any] = {"containers": {}, "mounts": [], "build_storages": []}


def test_a_build_over_its_memory_limit_fails_and_nothing_else(
    start_service: Start,
    make_settings: Callable[..., Settings],
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    tmp_path: Path,
) -> None:
    hungry, modest = f"bah-oom-{uuid.uuid4().hex[:8]}", f"bah-fits-{uuid.uuid4().hex[:8]}"
    make_repo(
        git_root, hungry, {"Dockerfile": f"FROM {registry_base_image}\n" + STEP.format(300, 299, hungry)}
    )
    make_repo(git_root, modest, {"Dockerfile": f"FROM {registry_base_image}\n" + STEP.format(8, 7, modest)})
    state = tmp_path / "state"
    cgroups = service_cgroups(make_settings, state, build_memory_limit=LIMIT)
    with start_service(engine="buildah", state_dir=state, build_memory_limit=LIMIT) as service:
        _, events = native_build(service, git_daemon_url + hungry)
        assert events[-1]["phase"] == "failed", events[-3:]
        assert events[-1]["code"] == "build_out_of_memory"
        assert "memory limit of 128 MiB" in events[-1]["message"]
        assert "head -c 300m" in events[-1]["message"]  # which step
        assert build_cgroups_left(cgroups) == []
        # the service and other builds carry on
        _, fits = native_build(service, git_daemon_url + modest)
        assert fits[-1]["phase"] == "ready", fits[-3:]
        assert build_cgroups_left(cgroups) == []
        assert httpx.get(f"{service}health", timeout=60).json()["ok"]
    assert left_behind(state) == NOTHING
    assert [p for p in cgroups.parents() if p.exists()] == []  # the service's own go when it stops


def test_every_process_of_a_build_runs_in_its_cgroup_until_cancelled(
    start_service: Start,
    make_settings: Callable[..., Settings],
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    tmp_path: Path,
) -> None:
    name = f"bah-cg-{uuid.uuid4().hex[:8]}"
    step = f"echo {name} && sleep 120 && echo done"
    make_repo(git_root, name, {"Dockerfile": f"FROM {registry_base_image}\nRUN {step}\n"})
    state = tmp_path / "state"
    limits: dict[str, Any] = {"build_memory_limit": LIMIT, "build_cpu_limit": 1.5}
    cgroups = service_cgroups(make_settings, state, **limits)
    memory_parent, cpu_parent = cgroups.parents()
    with start_service(engine="buildah", state_dir=state, **limits) as service:
        build = start_build(service, git_daemon_url + name)
        seen: dict[str, list[tuple[int, str, str]]] = {}  # (pid, memory cgroup, cpu cgroup) by what

        def look_then_cancel() -> None:
            # repo2docker, buildah, and the RUN step (under runc, in a cgroup of runc's below the build's);
            # not the durable wrapper that waits for the build to write its exit status (durable.py)
            wrapper = set(processes("binder-service-build"))
            for what in ("repo2docker", "\0bud\0", "sleep 120 && echo done"):
                pids = [pid for pid in processes(what) if pid not in wrapper]
                seen[what] = [(pid, cgroup_of(pid, "memory"), cgroup_of(pid, "cpu")) for pid in pids]
            httpx.post(f"{service}api/v1/builds/{build['id']}/cancel", timeout=30).raise_for_status()

        events = stream_until(
            str(httpx.URL(service).join(build["events_url"])),
            lambda e: str(e.get("message", "")).strip() == name,  # the RUN step runs
            look_then_cancel,
        )
        assert events[-1]["code"] == "build_cancelled", events[-3:]
        assert all(seen.values()), seen
        memory = f"{memory_parent.name}/{build['id']}"
        cpu = f"{cpu_parent.name}/{build['id']}"
        for what, found in seen.items():
            for pid, in_memory, in_cpu in found:
                assert memory in in_memory, (what, pid, in_memory)
                assert cpu in in_cpu, (what, pid, in_cpu)
        wait_until(lambda: not running(step), what="the RUN step to end")
        assert build_cgroups_left(cgroups) == []
    assert left_behind(state) == NOTHING


def test_a_build_users_build_is_held_by_its_cgroup(
    start_service: Start,
    make_settings: Callable[..., Settings],
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    tmp_path: Path,
    build_user: str,
) -> None:
    """Rootless RUN steps (a chroot: no cgroup of their own) are held by the build's cgroup, which the
    service, root, makes; the build user's buildah runs inside it."""
    hungry = f"bah-user-oom-{uuid.uuid4().hex[:8]}"
    make_repo(
        git_root, hungry, {"Dockerfile": f"FROM {registry_base_image}\n" + STEP.format(300, 299, hungry)}
    )
    state = tmp_path / "state"
    cgroups = service_cgroups(make_settings, state, build_user=build_user, build_memory_limit=LIMIT)
    with start_service(
        engine="buildah", state_dir=state, build_user=build_user, build_memory_limit=LIMIT
    ) as service:
        _, events = native_build(service, git_daemon_url + hungry)
    assert events[-1]["phase"] == "failed", events[-3:]
    assert events[-1]["code"] == "build_out_of_memory"
    assert "the build was killed at its memory limit of 128 MiB" in events[-1]["message"]
    assert build_cgroups_left(cgroups) == []
    uid = pwd.getpwnam(build_user).pw_uid
    wait_until(lambda: not _processes_of(uid), what="the build user's processes to end")


def _processes_of(uid: int) -> list[int]:
    return [pid for pid in processes("") if _owner(pid) == uid]


def _owner(pid: int) -> int | None:
    try:
        return Path(f"/proc/{pid}").stat().st_uid
    except OSError:
        return None


def test_the_cgroups_of_builds_that_died_with_the_service_go_at_start(
    start_service: Start, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    cgroups = service_cgroups(make_settings, state, build_memory_limit=LIMIT)
    cgroups.prepare()
    left = cgroups.create("deadbeef01")
    (left.dirs[0] / "buildah-buildah123").mkdir()  # a RUN step's, under runc
    assert build_cgroups_left(cgroups) == ["deadbeef01"]
    with start_service(engine="buildah", state_dir=state, build_memory_limit=LIMIT):
        assert build_cgroups_left(cgroups) == []
