"""A restart loses no build: SIGKILL a real `binder-service serve` mid-build and start it again.

The restarted service adopts the repo2docker process that kept running (it is recorded in the build
store with its durable log), answers for the same build id, joins new requests to it instead of starting
a second build, and resumes the event stream after `Last-Event-ID` to `ready`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.net import free_port
from tests.support.repos import buildable_repo, counting_repo2docker
from tests.support.serve_process import serve_process
from tests.support.service import sse_messages

pytestmark = pytest.mark.docker


def _env(world_env: dict[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    """The service's environment: the world, a state directory of the test's own, a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_SERVICE_", "JUPYTERHUB_"))}
    env.update(
        BINDER_SERVICE_PORT=str(free_port()),
        BINDER_SERVICE_REGISTRY_URL=f"http://{world_env['BINDER_WORLD_REGISTRY']}",
        BINDER_SERVICE_IMAGE_PREFIX=f"test-restart-{uuid.uuid4().hex[:6]}/",
        BINDER_SERVICE_DOCKER_HOST=world_env["DOCKER_HOST"],
        BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS="true",
        BINDER_SERVICE_STATE_DIR=str(tmp_path / "state"),
        BINDER_SERVICE_KEEPALIVE_INTERVAL="0.5",
        **extra,
    )
    return env


@contextmanager
def _serve(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The service on the port `env` names (a restart keeps the URL), stopped gracefully at the end."""
    with serve_process(env, log, graceful=True) as (proc, _):
        yield proc


def _events(url: str, *, last_event_id: int | None = None, until: str | None = None) -> list[dict[str, Any]]:
    """Events of a native stream (with their ids), to its end or to the first of phase `until`."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    return sse_messages(url, headers=headers, until=until)


def test_sigkill_mid_build_then_restart_adopts_the_build(
    world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    name, _ = buildable_repo(git_root, run="sleep 10")
    repo2docker, runs = counting_repo2docker(tmp_path)
    env = _env(world_env, tmp_path, BINDER_SERVICE_REPO2DOCKER_COMMAND=str(repo2docker))
    port = env["BINDER_SERVICE_PORT"]
    api = f"http://127.0.0.1:{port}/api/v1/builds"
    body = {"repo": git_daemon_url + name, "ref": "main"}
    log = tmp_path / "serve.log"

    with _serve(env, log) as first:
        created = httpx.post(api, json=body, timeout=30)
        assert created.status_code == 201, created.text
        build = created.json()
        seen = _events(f"{api}/{build['id']}/events", until="building")
        first.send_signal(signal.SIGKILL)  # no shutdown: what a crash or an OOM kill does
        first.wait()
    last_seen = seen[-1]["id"]

    with _serve(env, log):
        again = httpx.get(f"{api}/{build['id']}", timeout=10)
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "running"  # adopted, not forgotten
        joined = httpx.post(api, json=body, timeout=30)
        assert joined.status_code == 200, joined.text
        assert joined.json()["id"] == build["id"]  # joined, not a second build
        rest = _events(f"{api}/{build['id']}/events", last_event_id=last_seen)
        assert [e["id"] for e in rest] == list(range(last_seen + 1, last_seen + 1 + len(rest)))
        assert rest[-1]["phase"] == "ready", rest[-1]
        assert rest[-1]["image_name"] == build["image_name"]
        done = httpx.get(f"{api}/{build['id']}", timeout=10).json()
        assert done["status"] == "ready"
        text = httpx.get(f"{api}/{build['id']}/log", timeout=10)
        assert text.headers["content-type"].startswith("text/plain")
        assert name in text.text  # the build's own RUN step, from before and after the restart
    assert runs.read_text().count("run") == 1  # one repo2docker process, ever


def test_finished_builds_outlive_the_service(
    world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    name, _ = buildable_repo(git_root)
    env = _env(world_env, tmp_path)
    port = env["BINDER_SERVICE_PORT"]
    api = f"http://127.0.0.1:{port}/api/v1/builds"
    log = tmp_path / "serve.log"
    with _serve(env, log) as first:
        build = httpx.post(api, json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30).json()
        events = _events(f"{api}/{build['id']}/events")
        assert events[-1]["phase"] == "ready"
        first.terminate()
        first.wait(30)
    with _serve(env, log):
        listed = httpx.get(api, timeout=10).json()["builds"]
        assert [b["id"] for b in listed] == [build["id"]]
        assert listed[0]["status"] == "ready"
        assert listed[0]["last_event_id"] == events[-1]["id"]
        assert _events(f"{api}/{build['id']}/events") == events  # the whole history, replayed
        missing = httpx.get(f"{api}/{build['id']}/events", headers={"Last-Event-ID": str(events[-1]["id"])})
        assert missing.status_code == 204  # over, nothing after: stop reconnecting
        text = httpx.get(f"{api}/{build['id']}/log", timeout=10).text
        assert text == "".join(e["message"] for e in events)
        assert httpx.get(f"{api}/nope/log", timeout=10).json()["code"] == "build_not_found"


def test_a_build_that_finished_while_the_service_was_down_ends_ready(
    world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    # Killed at its first build step, the service is down longer than the rest of the build takes: the
    # process ends (exit status 0) before its last events are stored; the restarted service replays them.
    name, _ = buildable_repo(git_root)
    repo2docker, runs = counting_repo2docker(tmp_path)
    env = _env(world_env, tmp_path, BINDER_SERVICE_REPO2DOCKER_COMMAND=str(repo2docker))
    api = f"http://127.0.0.1:{env['BINDER_SERVICE_PORT']}/api/v1/builds"
    log = tmp_path / "serve.log"
    with _serve(env, log) as first:
        build = httpx.post(api, json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30).json()
        seen = _events(f"{api}/{build['id']}/events", until="building")
        first.send_signal(signal.SIGKILL)
        first.wait()
    exit_status = tmp_path / "state" / "builds" / build["id"] / "exit-status"
    while not exit_status.exists():  # the build finishes on its own meanwhile
        time.sleep(0.1)
    with _serve(env, log):
        rest = _events(f"{api}/{build['id']}/events", last_event_id=seen[-1]["id"])
        assert rest[-1]["phase"] == "ready", rest
        whole = _events(f"{api}/{build['id']}/events")
        assert [e["id"] for e in whole] == list(range(1, len(whole) + 1))  # no gap, nothing twice
        assert sum(name in e["message"] for e in whole) >= 1  # its RUN step's output, replayed
    assert runs.read_text().count("run") == 1


def test_sigkill_after_the_build_finished_before_its_last_event_was_stored(
    world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    # The window made deterministic: the test holds SQLite's write lock from the build's first step on,
    # so the service streams the rest (to `ready`) from memory while its writer waits; then it is killed.
    name, _ = buildable_repo(git_root, run="sleep 2")
    repo2docker, runs = counting_repo2docker(tmp_path)
    env = _env(world_env, tmp_path, BINDER_SERVICE_REPO2DOCKER_COMMAND=str(repo2docker))
    api = f"http://127.0.0.1:{env['BINDER_SERVICE_PORT']}/api/v1/builds"
    log = tmp_path / "serve.log"
    with _serve(env, log) as first:
        build = httpx.post(api, json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30).json()
        headers = {"Accept": "text/event-stream"}
        live: list[dict[str, Any]] = []
        with httpx.stream("GET", f"{api}/{build['id']}/events", headers=headers, timeout=120) as r:
            lines = r.iter_lines()
            for line in lines:
                if line.startswith("data:"):
                    live.append(json.loads(line[5:]))
                    if live[-1]["phase"] == "building":
                        break
            blocker = sqlite3.connect(tmp_path / "state" / "binder-service.sqlite", isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # the store takes no write until this ends
            try:
                for line in lines:
                    if line.startswith("data:"):
                        live.append(json.loads(line[5:]))
                assert live[-1]["phase"] == "ready", live[-1]  # said live, from memory
                first.send_signal(signal.SIGKILL)
                first.wait()
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
    with sqlite3.connect(tmp_path / "state" / "binder-service.sqlite") as db:
        stored = db.execute("SELECT max(event_id) FROM events WHERE build_id = ?", (build["id"],)).fetchone()
        status = db.execute("SELECT status FROM builds WHERE id = ?", (build["id"],)).fetchone()
    assert stored[0] < live[-1]["id"]  # the last events were not stored: the window was hit
    assert status[0] == "running"
    with _serve(env, log):
        whole = _events(f"{api}/{build['id']}/events")
        assert whole[-1]["phase"] == "ready", whole[-1]
        assert whole[-1]["image_name"] == build["image_name"]
        assert [e["id"] for e in whole] == list(range(1, len(whole) + 1))  # no gap, nothing twice
        assert sum(e["phase"] == "ready" for e in whole) == 1
        assert httpx.get(f"{api}/{build['id']}", timeout=10).json()["status"] == "ready"
        # The events the killed service said but never stored are said again, with the same messages.
        said = [(e["phase"], e["message"]) for e in live if e["id"] > stored[0]]
        again = [(e["phase"], e["message"]) for e in whole if e["id"] > stored[0]]
        assert [m for m in again if "restarted" not in m[1]] == said
        # A client that saw the first service's `ready` and reconnects ends at `ready` again, or is told
        # the build is over: never a stream that ends without its last event.
        resumed = httpx.get(
            f"{api}/{build['id']}/events", headers={"Last-Event-ID": str(live[-1]["id"])}, timeout=30
        )
        assert resumed.status_code in (200, 204), resumed.text
        if resumed.status_code == 200:
            tail = [json.loads(x[5:]) for x in resumed.text.splitlines() if x.startswith("data:")]
            assert tail[-1]["phase"] == "ready", tail
    assert runs.read_text().count("run") == 1  # nothing built twice
