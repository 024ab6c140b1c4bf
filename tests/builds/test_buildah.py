"""engine = "buildah" on one machine, with real parts: buildah, runc, the world's registries, git servers.

Base images come from the world's registry (buildah has no Docker engine to take them from).
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from binder_service.builds.buildah_local import BuildahStorage, storage_key
from binder_service.images.registry.client import MANIFEST_TYPES, split_image
from binder_service.settings import Settings
from tests.support.buildah import (
    build_cgroups_left,
    left_behind,
    mounts_under,
    native_build,
    read_until,
    running,
    service_cgroups,
    stream_until,
)
from tests.support.gitserve import commit, make_repo
from tests.support.net import free_port
from tests.support.registry_servers import RegistryServer
from tests.support.serve_process import serve_process
from tests.support.service import sse_messages
from tests.support.waiting import wait_until

pytestmark = pytest.mark.docker
LIMIT = "128MiB"  # a memory limit a small build fits in (its cgroup: test_buildah_limits.py)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
Start = Callable[..., AbstractContextManager[str]]


def _manifest(registry: str, image: str, auth: tuple[str, str] | None = None) -> dict[str, Any]:
    _, repo, tag = split_image(image)
    r = httpx.get(
        f"{registry}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, auth=auth, timeout=10
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


@pytest.fixture
def base_image(registry_base_image: str) -> str:
    return registry_base_image


def test_build_and_push_through_both_faces(
    start_service: Start, git_root: Path, git_daemon_url: str, base_image: str, tmp_path: Path
) -> None:
    registry = "http://" + base_image.split("/", 1)[0]
    state = tmp_path / "state"
    native, hub = f"bah-native-{uuid.uuid4().hex[:8]}", f"bah-hub-{uuid.uuid4().hex[:8]}"
    for name in (native, hub):
        make_repo(git_root, name, {"Dockerfile": f"FROM {base_image}\nARG NB_USER\nRUN echo {name} > /id\n"})
    with start_service(engine="buildah", state_dir=state) as service:
        health = httpx.get(f"{service}health", timeout=60).json()
        assert {"service": "buildah", "ok": True} in health["checks"], health

        build, events = native_build(service, git_daemon_url + native)
        assert events[-1]["phase"] == "ready", events[-5:]
        phases = [e["phase"] for e in events]
        assert phases.index("building") < phases.index("pushing") < phases.index("ready")
        assert any("pushing" in e["message"] and "with buildah" in e["message"] for e in events)
        assert _manifest(registry, build["image_name"])["mediaType"] == DOCKER_MANIFEST  # --format docker

        spec = quote(git_daemon_url + hub, safe="")
        got = sse_messages(f"{service}build/git/{spec}/main?build_only=true", timeout=300)
        assert got[-1]["phase"] == "ready", got[-5:]
        assert _manifest(registry, got[-1]["imageName"])["mediaType"] == DOCKER_MANIFEST
    assert left_behind(state) == {"containers": {}, "mounts": [], "build_storages": []}


def test_push_with_credentials_from_a_private_auth_file(
    start_service: Start,
    git_root: Path,
    git_daemon_url: str,
    base_image: str,
    basic_auth_registry: RegistryServer,
    tmp_path: Path,
) -> None:
    reg = basic_auth_registry
    assert reg.username
    assert reg.password
    token = f"{reg.username}:{reg.password}"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {reg.host: {"auth": _b64(token)}}}))
    name = f"bah-auth-{uuid.uuid4().hex[:8]}"
    make_repo(git_root, name, {"Dockerfile": f"FROM {base_image}\nRUN echo {name} > /id\n"})
    state = tmp_path / "state"
    seen_argv: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_argv, args=(seen_argv, stop), daemon=True)
    watcher.start()
    try:
        with start_service(
            engine="buildah", registry_url=reg.url, docker_config=config, state_dir=state
        ) as service:
            build, events = native_build(service, git_daemon_url + name)
    finally:
        stop.set()
        watcher.join(10)
    assert events[-1]["phase"] == "ready", events[-5:]
    assert _manifest(reg.url, build["image_name"], auth=(reg.username, reg.password))
    assert any("buildah" in a for a in seen_argv)  # the watcher did see the build's processes
    assert not [a for a in seen_argv if reg.password in a]  # never on a command line
    assert reg.password not in json.dumps(events)
    logs = [p.read_text() for p in (state / "builds").rglob("build.log")]
    assert logs
    assert not any(reg.password in text for text in logs)
    assert not list(state.rglob("registry-auth.json"))  # removed with the build's directory


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _watch_argv(seen: list[str], stop: threading.Event) -> None:
    """Every command line of every process while a build runs (what `ps` would show anyone)."""
    while not stop.is_set():
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with suppress(OSError):
                    seen.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        time.sleep(0.05)


def test_registry_layer_cache_on_fresh_storage(
    start_service: Start, git_root: Path, git_daemon_url: str, base_image: str, tmp_path: Path
) -> None:
    registry = "http://" + base_image.split("/", 1)[0]
    name = f"bah-cache-{uuid.uuid4().hex[:8]}"
    # The expensive step writes when it ran; a rebuild that re-ran it would make a different layer.
    dockerfile = (
        f"FROM {base_image}\nRUN sleep 2 && date +%s%N > /stamp && echo {name}\nCOPY step.txt /step.txt\n"
    )
    make_repo(git_root, name, {"Dockerfile": dockerfile, "step.txt": "1"})
    prefix = f"test-bah-cache-{uuid.uuid4().hex[:6]}/"
    with start_service(engine="buildah", image_prefix=prefix, state_dir=tmp_path / "a") as service:
        first, _ = native_build(service, git_daemon_url + name)
    commit(git_root / name, {"step.txt": "2"})
    # Another state directory: storage that never saw the repository (another machine, a new pod).
    with start_service(engine="buildah", image_prefix=prefix, state_dir=tmp_path / "b") as service:
        second, events = native_build(service, git_daemon_url + name)
        assert events[-1]["phase"] == "ready", events[-5:]
        messages_ = [str(e["message"]) for e in events]
        assert f"Reusing layers of {first['image_name']}\n" in messages_
        metrics = httpx.get(f"{service}metrics", timeout=10).text
        assert 'binder_layer_cache_builds_total{result="hit"} 1.0' in metrics
    a = [layer["digest"] for layer in _manifest(registry, first["image_name"])["layers"]]
    b = [layer["digest"] for layer in _manifest(registry, second["image_name"])["layers"]]
    assert a[:-1] == b[:-1]  # the expensive step's layer is the very same blob
    assert a[-1] != b[-1]  # the changed step was rebuilt


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_stopped_build_leaves_nothing_behind(
    how: str,
    start_service: Start,
    make_settings: Callable[..., Settings],
    git_root: Path,
    git_daemon_url: str,
    base_image: str,
    tmp_path: Path,
) -> None:
    """Cancelled, or out of time with a memory limit (its cgroup goes too; a cancelled build's cgroup is
    test_buildah_limits.py's)."""
    name = f"bah-stop-{uuid.uuid4().hex[:8]}"
    make_repo(
        git_root, name, {"Dockerfile": f"FROM {base_image}\nRUN echo {name} && sleep 120 && echo done\n"}
    )
    state = tmp_path / "state"
    timeout: dict[str, Any] = {"build_timeout": 15.0, "build_memory_limit": LIMIT} if how == "timeout" else {}
    with start_service(engine="buildah", state_dir=state, **timeout) as service:
        r = httpx.post(
            f"{service}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30
        )
        assert r.status_code == 201, r.text
        build = r.json()

        def cancel() -> None:
            assert running(f"echo {name} && sleep 120 && echo done")  # the step runs now
            if how == "cancel":
                c = httpx.post(f"{service}api/v1/builds/{build['id']}/cancel", timeout=30)
                assert c.status_code in (200, 202), c.text

        events = stream_until(
            str(httpx.URL(service).join(build["events_url"])),
            lambda e: str(e.get("message", "")).strip() == name,  # the RUN step is running
            cancel,
        )
        assert events[-1]["phase"] == "failed", events[-3:]
        assert events[-1]["code"] == ("build_cancelled" if how == "cancel" else "build_timeout")
        # the step's process is gone too (it ran under runc, in the build's process group)
        wait_until(lambda: not running(f"echo {name} && sleep 120 && echo done"), what="the RUN step to end")
    assert left_behind(state) == {"containers": {}, "mounts": [], "build_storages": []}
    if timeout:
        assert build_cgroups_left(service_cgroups(make_settings, state, build_memory_limit=LIMIT)) == []


def test_a_killed_build_is_cleaned_at_the_next_start(base_image: str, tmp_path: Path) -> None:
    """What a SIGKILL leaves (the working container, its mounts) goes when a service starts again."""
    storage = BuildahStorage(tmp_path / "buildah", environ=os.environ, registry_url="", docker_config=None)
    (tmp_path / "buildah").mkdir()
    path = storage._prepare(tmp_path / "buildah" / "r-killed")  # as a build would have it
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo started && sleep 120\n")
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(path / "storage.conf")}
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{base_image.split("/", 1)[0]}"\ninsecure = true\n')
    env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    log = tmp_path / "bud.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["buildah", "bud", "--isolation", "oci", "--network", "host", "-t", "x", str(tmp_path / "ctx")],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: "started" in log.read_text(), what="the RUN step")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert storage.containers(path)  # the killed build's working container
    assert mounts_under(path)

    assert storage.sweep() == [path]
    assert storage.containers(path) == []
    assert mounts_under(path) == []


def test_as_root_buildah_runs_as_the_named_build_user(
    start_service: Start,
    git_root: Path,
    git_daemon_url: str,
    base_image: str,
    tmp_path: Path,
    build_user: str,
) -> None:
    user = pwd.getpwnam(build_user)
    name = f"bah-user-{uuid.uuid4().hex[:8]}"
    # uid_map inside the build: "0 <the user's uid> 1": RUN's root is the build user outside
    make_repo(
        git_root, name, {"Dockerfile": f"FROM {base_image}\nRUN head -1 /proc/self/uid_map && echo {name}\n"}
    )
    root = Path(user.pw_dir) / "binder-service-buildah"
    with start_service(engine="buildah", build_user=build_user, state_dir=tmp_path / "state") as service:
        health = httpx.get(f"{service}health", timeout=60).json()
        assert {"service": "buildah", "ok": True} in health["checks"], health
        build, events = native_build(service, git_daemon_url + name)
        assert events[-1]["phase"] == "ready", events[-5:]
        maps = [e["message"].split() for e in events if e["message"].split()[:1] == ["0"]]
        assert maps, [e["message"] for e in events]
        assert maps[0][:2] == ["0", str(user.pw_uid)], maps
    storage = BuildahStorage(
        root, environ=os.environ, registry_url="", docker_config=None, build_user=build_user
    )
    mine = root / storage_key(build["image_name"])
    assert mine.stat().st_uid == user.pw_uid  # the storage is the user's
    assert (mine / "root" / "overlay-images").is_dir()  # kept for the repository's next commit
    assert storage.containers(mine) == []
    assert not list(mine.glob("build-*"))  # the handed-over context and credentials are gone
    wait_until(lambda: not _processes_of(user.pw_uid), what="the build user's processes to end")


def test_a_cancelled_build_of_the_build_user_leaves_nothing_behind(
    start_service: Start,
    git_root: Path,
    git_daemon_url: str,
    base_image: str,
    tmp_path: Path,
    build_user: str,
) -> None:
    user = pwd.getpwnam(build_user)
    name = f"bah-user-stop-{uuid.uuid4().hex[:8]}"
    make_repo(
        git_root, name, {"Dockerfile": f"FROM {base_image}\nRUN echo {name} && sleep 120 && echo done\n"}
    )
    with start_service(engine="buildah", build_user=build_user, state_dir=tmp_path / "state") as service:
        r = httpx.post(
            f"{service}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30
        )
        assert r.status_code == 201, r.text
        build = r.json()

        def cancel() -> None:
            httpx.post(f"{service}api/v1/builds/{build['id']}/cancel", timeout=30).raise_for_status()

        events = stream_until(
            str(httpx.URL(service).join(build["events_url"])),
            lambda e: str(e.get("message", "")).strip() == name,
            cancel,
        )
        assert events[-1]["code"] == "build_cancelled", events[-3:]
    wait_until(lambda: not _processes_of(user.pw_uid), what="the build user's processes to end")
    root = Path(user.pw_dir) / "binder-service-buildah"
    storage = BuildahStorage(
        root, environ=os.environ, registry_url="", docker_config=None, build_user=build_user
    )
    mine = root / storage_key(build["image_name"])
    assert storage.containers(mine) == []
    assert not list(mine.glob("build-*"))
    assert mounts_under(root) == []


def _processes_of(uid: int) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        with suppress(OSError):
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                found.append(proc.name)
    return found


def test_a_failing_step_is_the_reason_said_once(
    start_service: Start, git_root: Path, git_daemon_url: str, base_image: str, tmp_path: Path
) -> None:
    name = f"bah-fail-{uuid.uuid4().hex[:8]}"
    make_repo(git_root, name, {"Dockerfile": f"FROM {base_image}\nRUN echo {name} && exit 3\n"})
    with start_service(engine="buildah", state_dir=tmp_path / "state") as service:
        _, events = native_build(service, git_daemon_url + name)
    assert events[-1]["phase"] == "failed", events[-3:]
    assert events[-1]["code"] == "build_failed"
    reason = events[-1]["message"]
    assert reason.startswith("Error: building at STEP"), reason
    assert reason.rstrip().endswith("exit status 3"), reason
    assert not [e for e in events[:-1] if "exit status 3" in e["message"]]  # not also as a log line


def test_a_graceful_stop_leaves_nothing_behind(
    start_service: Start,
    make_settings: Callable[..., Settings],
    git_root: Path,
    git_daemon_url: str,
    base_image: str,
    tmp_path: Path,
) -> None:
    """The service stopping (what SIGTERM does to `serve`) stops a running local build: its RUN step
    ends, and its container, mounts and cgroup go."""
    name = f"bah-term-{uuid.uuid4().hex[:8]}"
    make_repo(
        git_root, name, {"Dockerfile": f"FROM {base_image}\nRUN echo {name} && sleep 120 && echo done\n"}
    )
    state = tmp_path / "state"
    with start_service(engine="buildah", state_dir=state, build_memory_limit=LIMIT) as service:
        r = httpx.post(
            f"{service}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30
        )
        assert r.status_code == 201, r.text
        read_until(str(httpx.URL(service).join(r.json()["events_url"])), name)  # the RUN step runs
        assert running(f"echo {name} && sleep 120 && echo done")
    wait_until(lambda: not running(f"echo {name} && sleep 120 && echo done"), what="the RUN step to end")
    wait_until(lambda: not left_behind(state)["containers"], what="the build's container to go")
    assert left_behind(state) == {"containers": {}, "mounts": [], "build_storages": []}
    assert build_cgroups_left(service_cgroups(make_settings, state, build_memory_limit=LIMIT)) == []


def test_sigkill_mid_build_then_restart_adopts_and_cleans(
    world_env: dict[str, str],
    make_settings: Callable[..., Settings],
    git_root: Path,
    git_daemon_url: str,
    base_image: str,
    tmp_path: Path,
) -> None:
    """A SIGKILLed `serve` leaves its buildah build running (durable, docs/state.md) in its cgroup; the
    next start adopts it, and when it is cancelled there its RUN step ends and its container, mounts and
    cgroup go."""
    name = f"bah-kill-{uuid.uuid4().hex[:8]}"
    make_repo(
        git_root, name, {"Dockerfile": f"FROM {base_image}\nRUN echo {name} && sleep 120 && echo done\n"}
    )
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_SERVICE_", "JUPYTERHUB_"))}
    env.update(
        BINDER_SERVICE_PORT=str(free_port()),
        BINDER_SERVICE_ENGINE="buildah",
        BINDER_SERVICE_REGISTRY_URL=f"http://{world_env['BINDER_WORLD_REGISTRY']}",
        BINDER_SERVICE_IMAGE_PREFIX=f"test-bah-kill-{uuid.uuid4().hex[:6]}/",
        BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS="true",
        BINDER_SERVICE_STATE_DIR=str(state),
        BINDER_SERVICE_KEEPALIVE_INTERVAL="0.5",
        BINDER_SERVICE_BUILD_MEMORY_LIMIT=LIMIT,
    )
    cgroups = service_cgroups(make_settings, state, build_memory_limit=LIMIT)
    log = tmp_path / "serve.log"
    step = f"echo {name} && sleep 120 && echo done"
    with serve_process(env, log) as (first, url):
        r = httpx.post(f"{url}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30)
        assert r.status_code == 201, r.text
        build = r.json()
        read_until(f"{url}api/v1/builds/{build['id']}/events", name)  # the RUN step runs
        first.send_signal(signal.SIGKILL)  # no shutdown: what a crash or an OOM kill does
        first.wait()
    assert running(step)  # the build outlived the service
    assert build_cgroups_left(cgroups) == [build["id"]]
    with serve_process(env, log, graceful=True) as (_, url):
        assert httpx.get(f"{url}api/v1/builds/{build['id']}", timeout=10).json()["status"] == "running"
        assert build_cgroups_left(cgroups) == [build["id"]]  # running: not swept at start, adopted
        c = httpx.post(f"{url}api/v1/builds/{build['id']}/cancel", timeout=30)
        assert c.status_code in (200, 202), c.text
        events = sse_messages(f"{url}api/v1/builds/{build['id']}/events", timeout=120)
        assert events[-1]["code"] == "build_cancelled", events[-3:]
        wait_until(lambda: not running(step), what="the RUN step to end")
        wait_until(lambda: not left_behind(state)["containers"], what="the adopted build's container to go")
    assert left_behind(state) == {"containers": {}, "mounts": [], "build_storages": []}
    assert build_cgroups_left(cgroups) == []
