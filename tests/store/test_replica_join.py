"""Two real `binder-service serve` replicas on one PostgreSQL: a build runs once, the other replica joins it.

Both faces of replica b join the build replica a runs (same id, its events live from the store, one
repo2docker run between them); a replica that dies mid-build leaves its followers a `failed` last event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.support.postgres import Cluster
from tests.support.repos import buildable_repo, counting_repo2docker
from tests.support.serve_process import serve_process
from tests.support.service import sse_messages

pytestmark = pytest.mark.docker


def _env(world_env: dict[str, str], db_url: str, state: Path, prefix: str, r2d: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_SERVICE_", "JUPYTERHUB_"))}
    env.update(
        BINDER_SERVICE_DB_URL=db_url,
        BINDER_SERVICE_STATE_DIR=str(state),
        BINDER_SERVICE_REGISTRY_URL=f"http://{world_env['BINDER_WORLD_REGISTRY']}",
        BINDER_SERVICE_IMAGE_PREFIX=prefix,
        BINDER_SERVICE_DOCKER_HOST=world_env["DOCKER_HOST"],
        BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS="true",
        BINDER_SERVICE_KEEPALIVE_INTERVAL="0.5",
        BINDER_SERVICE_REPO2DOCKER_COMMAND=str(r2d),
        BINDER_SERVICE_BUILD_LEASE="2",
    )
    return env


def _until(url: str, phase: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                out.append(httpx.Response(200, content=line[5:]).json())
                if out[-1]["phase"] == phase:
                    break
    return out


@dataclass
class Replicas:
    """Two `serve` replicas on one fresh PostgreSQL database, with a repository whose build runs `run`."""

    a: str
    b: str
    proc_a: subprocess.Popen[bytes]
    repo: str
    runs: Path

    @property
    def body(self) -> dict[str, str]:
        return {"repo": self.repo, "ref": "main"}


@contextlib.contextmanager
def two_replicas(
    pg: Cluster, world_env: dict[str, str], git_root: Path, git_url: str, tmp_path: Path, *, run: str
) -> Iterator[Replicas]:
    db = pg.create_database()
    r2d, runs = counting_repo2docker(tmp_path)
    prefix = f"test-join-{uuid.uuid4().hex[:6]}/"
    name, _ = buildable_repo(git_root, run=run)
    env_a = _env(world_env, db, tmp_path / "a", prefix, r2d)
    env_b = _env(world_env, db, tmp_path / "b", prefix, r2d)
    with (
        serve_process(env_a, tmp_path / "a.log") as (proc_a, a),
        serve_process(env_b, tmp_path / "b.log") as (_, b),
    ):
        yield Replicas(a, b, proc_a, git_url + name, runs)


def test_a_second_replica_joins_the_running_build_on_both_faces(
    pg: Cluster, world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    with two_replicas(pg, world_env, git_root, git_daemon_url, tmp_path, run="sleep 3") as replicas:
        a, b, repo, body, runs = replicas.a, replicas.b, replicas.repo, replicas.body, replicas.runs
        name = repo.removeprefix(git_daemon_url)
        made = httpx.post(f"{a}api/v1/builds", json=body, timeout=30)
        assert made.status_code == 201, made.text
        build = made.json()
        _until(f"{a}api/v1/builds/{build['id']}/events", "building")  # it runs on a
        joined = httpx.post(f"{b}api/v1/builds", json=body, timeout=30)
        assert joined.status_code == 200, joined.text  # joined, not created
        assert joined.json()["id"] == build["id"]
        # BinderHub's face on b: the same build's events, live, to ready.
        spec = quote(repo, safe="") + "/main"
        hub = sse_messages(f"{b}build/git/{spec}?build_only=true")
        assert hub[-1]["phase"] == "ready", hub
        assert hub[-1]["imageName"] == build["image_name"]
        assert any(name in str(e.get("message")) for e in hub)  # the RUN step's output, from a's log
        # The native face on b: every event of a's build, with a's ids.
        native = sse_messages(f"{b}api/v1/builds/{build['id']}/events")
        mine = sse_messages(f"{a}api/v1/builds/{build['id']}/events")
        assert [(e["_id"], e["message"]) for e in native] == [(e["_id"], e["message"]) for e in mine]
        assert httpx.get(f"{b}api/v1/builds/{build['id']}", timeout=10).json()["status"] == "ready"
    assert runs.read_text().count("run") == 1  # one repo2docker process between the two replicas


def test_a_replica_that_dies_mid_build_leaves_its_followers_a_last_event(
    pg: Cluster, world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    with two_replicas(pg, world_env, git_root, git_daemon_url, tmp_path, run="sleep 60") as replicas:
        a, b, body, runs, proc_a = replicas.a, replicas.b, replicas.body, replicas.runs, replicas.proc_a
        build = httpx.post(f"{a}api/v1/builds", json=body, timeout=30).json()
        _until(f"{a}api/v1/builds/{build['id']}/events", "building")
        joined = httpx.post(f"{b}api/v1/builds", json=body, timeout=30).json()
        assert joined["id"] == build["id"]
        proc_a.send_signal(signal.SIGKILL)  # a dies; nobody renews its lease (2 s)
        proc_a.wait()
        _end_orphan(tmp_path / "a", build["id"])  # its repo2docker would run on (nobody adopts it here)
        events = sse_messages(f"{b}api/v1/builds/{build['id']}/events")
        assert events[-1]["phase"] == "failed", events[-1]
        assert events[-1]["code"] == "build_owner_gone"
        assert "stopped answering" in events[-1]["message"]
        assert [e["_id"] for e in events] == list(range(1, len(events) + 1))
        record = httpx.get(f"{b}api/v1/builds/{build['id']}", timeout=10).json()
        assert record["status"] == "failed"
    assert runs.read_text().count("run") == 1


def test_a_cancel_on_the_replica_that_follows_stops_the_build_where_it_runs(
    pg: Cluster, world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    with two_replicas(pg, world_env, git_root, git_daemon_url, tmp_path, run="sleep 120") as replicas:
        a, b, body, runs = replicas.a, replicas.b, replicas.body, replicas.runs
        build = httpx.post(f"{a}api/v1/builds", json=body, timeout=30).json()
        _until(f"{a}api/v1/builds/{build['id']}/events", "building")
        joined = httpx.post(f"{b}api/v1/builds", json=body, timeout=30).json()
        assert joined["id"] == build["id"]
        cancelled = httpx.post(f"{b}api/v1/builds/{build['id']}/cancel", timeout=60)
        assert cancelled.status_code == 200, cancelled.text
        # a got the request through the store and stopped its build; both faces end with its word.
        events = sse_messages(f"{a}api/v1/builds/{build['id']}/events", timeout=60)
        assert events[-1]["phase"] == "failed", events[-1]
        assert events[-1]["code"] == "build_cancelled"
        followed = sse_messages(f"{b}api/v1/builds/{build['id']}/events", timeout=60)
        assert followed[-1]["code"] == "build_cancelled"
        for replica in (a, b):
            record = httpx.get(f"{replica}api/v1/builds/{build['id']}", timeout=10).json()
            assert record["status"] == "cancelled"
    assert runs.read_text().count("run") == 1


def _end_orphan(state: Path, build_id: str) -> None:
    """SIGKILL the process group of the build that the killed replica left running."""
    exit_file = str(state / "builds" / build_id / "exit-status").encode()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if exit_file in argv:
                os.killpg(int(proc.name), signal.SIGKILL)
                return
        time.sleep(0.1)


def test_a_replica_stopped_or_restarted_never_touches_another_replicas_builds(
    pg: Cluster, world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    """b follows a's running build and sees a's queued one; b's graceful stop and restart end, adopt
    and run none of them (one owner per build: a's, whose lease is alive)."""
    db = pg.create_database()
    r2d, runs = counting_repo2docker(tmp_path)
    prefix = f"test-owner-{uuid.uuid4().hex[:6]}/"
    running, _ = buildable_repo(git_root, run="sleep 25")
    queued, _ = buildable_repo(git_root)
    env_a = {**_env(world_env, db, tmp_path / "a", prefix, r2d), "BINDER_SERVICE_MAX_CONCURRENT_BUILDS": "1"}
    env_b = _env(world_env, db, tmp_path / "b", prefix, r2d)
    with serve_process(env_a, tmp_path / "a.log") as (_, a):
        first = httpx.post(
            f"{a}api/v1/builds", json={"repo": git_daemon_url + running, "ref": "main"}, timeout=30
        )
        build = first.json()
        _until(f"{a}api/v1/builds/{build['id']}/events", "building")
        waiting = httpx.post(
            f"{a}api/v1/builds", json={"repo": git_daemon_url + queued, "ref": "main"}, timeout=30
        )
        assert waiting.json()["status"] == "queued", waiting.text
        with serve_process(env_b, tmp_path / "b.log", graceful=True) as (proc_b, b):
            joined = httpx.post(
                f"{b}api/v1/builds", json={"repo": git_daemon_url + running, "ref": "main"}, timeout=30
            )
            assert joined.json()["id"] == build["id"]
            proc_b.send_signal(signal.SIGTERM)  # b stops while a's build runs
            assert proc_b.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        with serve_process(env_b, tmp_path / "b.log", graceful=True):  # and starts again
            pass
        for started in (build, waiting.json()):
            events = sse_messages(f"{a}api/v1/builds/{started['id']}/events")
            assert events[-1]["phase"] == "ready", events[-1]
    b_log = (tmp_path / "b.log").read_text()
    assert "adopted a running build" not in b_log
    assert "queued a build again" not in b_log
    assert runs.read_text().count("run") == 2  # each of a's builds once, both by a
