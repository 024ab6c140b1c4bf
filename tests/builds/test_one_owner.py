"""One owner per build store, with real `binder-service serve` processes on one state directory.

A second instance started beside a running one (another port, or a typo that reuses the busy port) must
exit having changed nothing: it never adopts, runs or ends the first one's builds. A dead owner's builds
are still adopted by the next start (tests/builds/test_restart.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from binder_service.store.ownership import LOCK_NAME, holder
from tests.support.net import free_port
from tests.support.repos import buildable_repo, counting_repo2docker
from tests.support.serve_process import serve_process
from tests.support.service import sse_messages

pytestmark = pytest.mark.docker


def _env(world_env: dict[str, str], state: Path, r2d: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_SERVICE_", "JUPYTERHUB_"))}
    env.update(
        BINDER_SERVICE_REGISTRY_URL=f"http://{world_env['BINDER_WORLD_REGISTRY']}",
        BINDER_SERVICE_IMAGE_PREFIX=f"test-owner-{uuid.uuid4().hex[:6]}/",
        BINDER_SERVICE_DOCKER_HOST=world_env["DOCKER_HOST"],
        BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS="true",
        BINDER_SERVICE_STATE_DIR=str(state),
        BINDER_SERVICE_KEEPALIVE_INTERVAL="0.5",
        BINDER_SERVICE_REPO2DOCKER_COMMAND=str(r2d),
        **extra,
    )
    return env


def _second(env: dict[str, str], port: int) -> subprocess.CompletedProcess[str]:
    """Another `serve` on the same state directory, run to its exit."""
    return subprocess.run(
        [sys.executable, "-m", "binder_service.cli", "serve"],
        env={**env, "BINDER_SERVICE_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: it should exit at once, but the machine may be loaded
        stdin=subprocess.DEVNULL,
    )


def test_a_second_instance_on_the_same_state_dir_refuses_and_touches_nothing(
    world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    r2d, runs = counting_repo2docker(tmp_path)
    state = tmp_path / "state"
    # One build slot: the second build waits in the queue while the second instance starts.
    env = _env(world_env, state, r2d, BINDER_SERVICE_MAX_CONCURRENT_BUILDS="1")
    running, _ = buildable_repo(git_root, run="sleep 4")
    queued, _ = buildable_repo(git_root)
    with serve_process(env, tmp_path / "first.log", graceful=True) as (first, url):
        api = f"{url}api/v1/builds"
        a = httpx.post(api, json={"repo": git_daemon_url + running, "ref": "main"}, timeout=30).json()
        sse_messages(f"{api}/{a['id']}/events", until="building")
        b = httpx.post(api, json={"repo": git_daemon_url + queued, "ref": "main"}, timeout=30).json()
        assert b["status"] == "queued", b

        second = _second(env, free_port())

        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr  # the holder, by name
        assert url in second.stderr
        assert "BINDER_SERVICE_STATE_DIR" in second.stderr  # and the fix
        assert "adopted" not in second.stderr
        assert "queued a build again" not in second.stderr
        assert holder(state / LOCK_NAME)["pid"] == first.pid
        # The first instance's builds, both of them, end ready there; nobody else ran them.
        assert sse_messages(f"{api}/{a['id']}/events")[-1]["phase"] == "ready"
        assert sse_messages(f"{api}/{b['id']}/events")[-1]["phase"] == "ready"
    assert runs.read_text().count("run") == 2


def test_a_second_instance_on_a_busy_port_exits_before_touching_anything(
    world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    """A typo that reuses the busy port: the bind fails first, so nothing is adopted and, at its exit,
    nothing is ended (before, it adopted the running build and its shutdown killed repo2docker)."""
    r2d, runs = counting_repo2docker(tmp_path)
    env = _env(world_env, tmp_path / "state", r2d)
    name, _ = buildable_repo(git_root, run="sleep 4")
    with serve_process(env, tmp_path / "first.log", graceful=True) as (_, url):
        api = f"{url}api/v1/builds"
        build = httpx.post(api, json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30).json()
        sse_messages(f"{api}/{build['id']}/events", until="building")

        port = int(url.rsplit(":", 1)[1].strip("/"))
        second = _second(env, port)

        assert second.returncode == 2, second.stderr
        assert "cannot listen" in second.stderr
        assert "adopted" not in second.stderr
        events = sse_messages(f"{api}/{build['id']}/events")
        assert events[-1]["phase"] == "ready", events[-1]
        assert httpx.get(f"{api}/{build['id']}", timeout=10).json()["status"] == "ready"
    assert runs.read_text().count("run") == 1
