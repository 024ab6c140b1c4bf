"""A graceful stop (SIGTERM, SIGINT) mid-build: every open stream gets a last word, and nothing is left.

A real `binder-service serve` process, real engine, registry and git; the signal is the real one.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.repos import buildable_repo
from tests.support.serve_process import serve_process
from tests.support.service import sse_messages
from tests.support.waiting import wait_until

pytestmark = pytest.mark.docker


def _env(world_env: dict[str, str], tmp: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "TMPDIR": str(tmp),  # everything the service makes in a temp dir lands here, for the checks below
        "DOCKER_HOST": world_env["DOCKER_HOST"],
        "BINDER_SERVICE_REGISTRY_URL": f"http://{world_env['BINDER_WORLD_REGISTRY']}",
        "BINDER_SERVICE_IMAGE_PREFIX": f"test-stop-{os.getpid()}/",
        "BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS": "true",
        "BINDER_SERVICE_KEEPALIVE_INTERVAL": "0.5",
        "BINDER_SERVICE_GIT_CREDENTIALS": "https://user:s3cret-token@git.example.org",
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_every_stream_gets_a_last_event_and_no_secret_stays_on_disk(
    sig: signal.Signals, world_env: dict[str, str], git_root: Path, git_daemon_url: str, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    name, commit = buildable_repo(git_root, run="sleep 120", prefix="graceful")
    got: dict[str, Any] = {}
    with serve_process(_env(world_env, tmp), tmp_path / "serve.log") as (proc, url):
        r = httpx.post(f"{url}api/v1/builds", json={"repo": f"{git_daemon_url}{name}"}, timeout=60)
        assert r.status_code == 201, r.text
        build = r.json()
        spec = f"{httpx.URL(git_daemon_url + name)}".replace(":", "%3A").replace("/", "%2F")
        native_raw: list[str] = []
        readers = [
            threading.Thread(
                target=lambda: got.update(bh=sse_messages(f"{url}build/git/{spec}/{commit}?build_only=true"))
            ),
            threading.Thread(
                target=lambda: got.update(
                    native=sse_messages(f"{url}api/v1/builds/{build['id']}/events", raw=native_raw)
                )
            ),
        ]
        for reader in readers:
            reader.start()

        def building() -> bool:
            phase = httpx.get(f"{url}api/v1/builds/{build['id']}", timeout=30).json()["phase"]
            return bool(phase == "building")

        wait_until(building, timeout=120, what="building")
        assert any(p.name == "git-credentials" for p in tmp.rglob("*"))  # while the build runs
        proc.send_signal(sig)
        for reader in readers:
            reader.join(60)
            assert not reader.is_alive()
        # uvicorn re-raises the signal once it has shut down cleanly (so the exit status tells it).
        assert proc.wait(60) in (0, -sig)
        assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()
    last = got["bh"][-1]
    assert (last["phase"], last["code"], last["status_code"]) == ("failed", "service_stopping", 503)
    assert "stopping" in last["message"]
    # The native stream's last word tells the client to reconnect, without an id (Last-Event-ID stays).
    tail = "\n".join(native_raw[-6:])
    assert "event: reconnect" in tail
    assert "service_stopping" in tail
    assert got["native"][-1]["phase"] != "failed"  # the build was not reported as failed to it
    # Nothing the service made outlives it: no workdir, no clone, no credentials file.
    assert list(tmp.iterdir()) == []
