"""Driving real buildah builds through a service (tests/builds/test_buildah*.py): a build and its events,
what a build left behind, the processes running now."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from binder_service_client import messages

from binder_service.builds.buildah_local import BuildahStorage
from binder_service.builds.cgroups import BuildCgroups
from binder_service.builds.executors import build_cgroups
from binder_service.settings import Settings
from tests.support.service import sse_messages


def storages(state: Path) -> list[Path]:
    root = state / "buildah"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        return [line.split(" ")[4] for line in f if line.split(" ")[4].startswith(prefix)]


def left_behind(state: Path) -> dict[str, Any]:
    """buildah containers and mounts under the service's state directory (nothing, after a build)."""
    storage = BuildahStorage(state / "buildah", environ=os.environ, registry_url="", docker_config=None)
    containers = {p.name: storage.containers(p) for p in storages(state)}
    return {
        "containers": {k: v for k, v in containers.items() if v},
        "mounts": mounts_under(state),
        "build_storages": [p.name for p in storages(state) if p.name.startswith("tmp-")],
    }


def native_build(
    service: str, repo: str, timeout: float = 300
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ask for a build of `repo` at main through the native API; the build and every event to its end."""
    r = httpx.post(f"{service}api/v1/builds", json={"repo": repo, "ref": "main"}, timeout=30)
    assert r.status_code == 201, r.text
    build: dict[str, Any] = r.json()
    events = sse_messages(str(httpx.URL(service).join(build["events_url"])), timeout=timeout)
    return build, events


def start_build(service: str, repo: str) -> dict[str, Any]:
    """Ask for a build of `repo` at main through the native API (without reading its events)."""
    r = httpx.post(f"{service}api/v1/builds", json={"repo": repo, "ref": "main"}, timeout=30)
    assert r.status_code == 201, r.text
    build: dict[str, Any] = r.json()
    return build


def stream_until(
    url: str, seen: Callable[[dict[str, Any]], bool], then: Callable[[], None]
) -> list[dict[str, Any]]:
    """Read a build's events; call `then` once an event satisfies `seen`; every event to the end."""
    events: list[dict[str, Any]] = []
    done = False
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=300) as r:
        for message in messages(r.iter_lines()):
            events.append(message.json())
            if not done and seen(events[-1]):
                done = True
                then()
    return events


def read_until(url: str, message: str) -> None:
    """Read a build's event stream until an event says `message` (then stop reading)."""
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=120) as r:
        for event in messages(r.iter_lines()):
            if str(event.json().get("message", "")).strip() == message:
                return
    raise AssertionError(f"the stream ended without {message!r}")


def processes(needle: str) -> list[int]:
    """The pids of the processes whose command line holds `needle`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and needle.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def running(needle: str) -> bool:
    return bool(processes(needle))


def service_cgroups(make_settings: Callable[..., Settings], state: Path, **limits: Any) -> BuildCgroups:
    """The build cgroups of a service with engine buildah, state directory `state` and `limits` (the
    names of their parents come from the state directory)."""
    found = build_cgroups(make_settings(engine="buildah", state_dir=state, **limits))
    assert found is not None
    return found


def build_cgroups_left(cgroups: BuildCgroups) -> list[str]:
    """The build cgroups (by build id) under a service's parents: none once its builds have ended."""
    return sorted(
        child.name
        for parent in cgroups.parents()
        if parent.is_dir()
        for child in parent.iterdir()
        if child.is_dir()
    )


def cgroup_of(pid: int, controller: str) -> str:
    """Process `pid`'s cgroup in the hierarchy of `controller` (from /proc/<pid>/cgroup)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        number, names, path = line.split(":", 2)
        if controller in names.split(",") or (number == "0" and not names and controller == "unified"):
            return path
    raise AssertionError(f"process {pid} has no {controller} cgroup")
