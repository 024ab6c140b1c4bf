"""Faults mid-build end cleanly and leave nothing behind: real engine, registry, git and repo2docker.

Each build here is stopped or broken on purpose: cancelled, past its timeout, its engine gone, its registry
refusing uploads. Every one ends with a `failed` event that says why, and nothing it made outlives it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.registry_servers import start_registry
from tests.support.repos import buildable_repo
from tests.support.service import sse_messages
from tests.support.unix_proxy import engine_proxy
from tests.support.waiting import wait_until

pytestmark = pytest.mark.docker
StartService = Callable[..., AbstractContextManager[str]]


def _wrapper(tmp_path: Path) -> tuple[list[str], Path]:
    """repo2docker behind a wrapper that records its TMPDIR and leaves a child that ignores SIGTERM."""
    record = tmp_path / "record"
    record.mkdir()
    script = tmp_path / "r2d-wrapper"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$TMPDIR" > {record}/tmpdir\n'
        # A member of the build's process group that outlives its leader unless the group is killed.
        f"sh -c 'trap \"\" TERM; while true; do sleep 1; done' >/dev/null 2>&1 </dev/null &\n"
        f"echo $! > {record}/stubborn\n"
        f'exec {Path(sys.executable).parent / "repo2docker"} "$@"\n'
    )
    script.chmod(0o755)
    return [str(script)], record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has not reaped it yet).
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _start(service: str, git_daemon_url: str, name: str) -> dict[str, Any]:
    r = httpx.post(f"{service}api/v1/builds", json={"repo": f"{git_daemon_url}{name}"}, timeout=60)
    assert r.status_code == 201, r.text
    build: dict[str, Any] = r.json()
    return build


def _phase(service: str, build_id: str) -> str:
    phase: str = httpx.get(f"{service}api/v1/builds/{build_id}", timeout=30).json()["phase"]
    return phase


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_stopped_build_leaves_no_clone_no_secret_and_no_process(
    how: str, start_service: StartService, git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    command, record = _wrapper(tmp_path)
    name, _ = buildable_repo(git_root, run="sleep 120", prefix=f"stop-{how}")
    timeout = 25.0 if how == "timeout" else 600.0
    creds = "https://user:s3cret-token@git.example.org"
    with start_service(repo2docker_command=command, build_timeout=timeout, git_credentials=creds) as service:
        build = _start(service, git_daemon_url, name)
        wait_until(lambda: _phase(service, build["id"]) == "building", timeout=120, what="building")
        tmpdir = Path((record / "tmpdir").read_text().strip())
        assert tmpdir.is_dir()
        assert any(p.name.startswith("repo2docker") for p in tmpdir.iterdir())
        secrets = [p for p in tmpdir.parent.iterdir() if p.name == "git-credentials"]
        assert secrets, "the build's credentials live beside its TMPDIR while it runs"
        stubborn = int((record / "stubborn").read_text())
        assert _alive(stubborn)
        if how == "cancel":
            httpx.post(f"{service}api/v1/builds/{build['id']}/cancel", timeout=60).raise_for_status()
        events = sse_messages(f"{service}api/v1/builds/{build['id']}/events", timeout=120)
        final = events[-1]
        assert final["phase"] == "failed"
        assert final["code"] == ("build_cancelled" if how == "cancel" else "build_timeout")
        assert not tmpdir.parent.exists()  # clone, temp files and the credentials file: gone
        assert not _alive(stubborn)  # the group is gone although this member ignored SIGTERM


def test_a_build_with_the_engine_down_says_so(start_service: StartService, tmp_path: Path) -> None:
    dead = tmp_path / "no-engine.sock"
    with start_service(docker_host=f"unix://{dead}") as service:
        health = httpx.get(f"{service}health", timeout=30)
        assert health.status_code == 503
        r = httpx.post(f"{service}api/v1/builds", json={"repo": "https://127.0.0.1:1/x", "ref": "a" * 40})
        assert r.status_code == 201, r.text
        events = sse_messages(f"{service}api/v1/builds/{r.json()['id']}/events", timeout=60)
        assert [(e["phase"], e.get("code")) for e in events][-1] == ("failed", "engine_unavailable")
        assert "commandline client" not in events[-1]["message"]


def test_the_engine_dying_mid_build_is_reported_as_such(
    start_service: StartService, world_env: dict[str, str], git_root: Path, git_daemon_url: str
) -> None:
    name, _ = buildable_repo(git_root, run="sleep 120", prefix="engine-dies")
    sock = Path(f"/tmp/bs-proxy-{os.getpid()}.sock")
    with (
        engine_proxy(sock, world_env["DOCKER_HOST"]) as proxy,
        start_service(docker_host=proxy.docker_host) as service,
    ):
        build = _start(service, git_daemon_url, name)
        wait_until(lambda: _phase(service, build["id"]) == "building", timeout=120, what="building")
        proxy.cut()
        events = sse_messages(f"{service}api/v1/builds/{build['id']}/events", timeout=120)
    final = events[-1]
    assert (final["phase"], final["code"]) == ("failed", "engine_unavailable")
    assert "became unreachable during the build" in final["message"]


def test_a_refused_push_reports_the_engines_reason_once(
    start_service: StartService, git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    registry = start_registry(tmp_path / "readonly", readonly=True)
    try:
        name, _ = buildable_repo(git_root, prefix="push-refused")
        with start_service(registry_url=registry.url) as service:
            build = _start(service, git_daemon_url, name)
            events = sse_messages(f"{service}api/v1/builds/{build['id']}/events", timeout=180)
    finally:
        registry.stop()
    final = events[-1]
    assert (final["phase"], final["code"]) == ("failed", "build_failed")
    assert final["message"].startswith("ERROR: "), final["message"]
    assert "buildx" not in final["message"]
    assert "Command '[" not in final["message"]
    # Said once: in the failed event, not also as the last log line before it.
    assert all(final["message"].strip() not in e["message"] for e in events[:-1])
    assert any(e["phase"] == "pushing" for e in events)


def test_a_failing_step_is_reported_once(
    start_service: StartService, git_root: Path, git_daemon_url: str
) -> None:
    name, _ = buildable_repo(git_root, run="exit 3", prefix="step-fails")
    with start_service() as service:
        build = _start(service, git_daemon_url, name)
        events = sse_messages(f"{service}api/v1/builds/{build['id']}/events", timeout=180)
    final = events[-1]
    assert (final["phase"], final["code"]) == ("failed", "build_failed")
    assert "exit code: 3" in final["message"]
    assert all(final["message"].strip() not in e["message"] for e in events[:-1])


def test_sigterm_reaches_every_member_even_after_the_leader_exits() -> None:
    """`stop_group` ends the group when its leader is already gone (a unit check of the mechanism)."""
    import asyncio

    from binder_service.builds.process_groups import stop_group

    async def scenario() -> int:
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            "sh -c 'trap \"\" TERM; while true; do sleep 1; done' >/dev/null 2>&1 & echo $!",
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert proc.stdout is not None
        member = int((await proc.stdout.readline()).decode())
        await proc.wait()  # the leader exited; its member lives on
        assert _alive(member)
        await stop_group(proc, grace=0.5)
        return member

    assert not _alive(asyncio.run(scenario()))
