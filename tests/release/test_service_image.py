"""The service's image (the Dockerfile), run as the chart runs it. Real dockerd: it is built here."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

WORLD_PYTHON_IMAGE = "binder-world/python:1"


def _docker_env() -> dict[str, str]:
    import world

    # BuildKit (for the Dockerfile's secret mount) comes from the buildx plugin, found through HOME/PATH.
    return {**os.environ, "DOCKER_HOST": world.DOCKER_HOST, "DOCKER_BUILDKIT": "1"}


@pytest.fixture(scope="module")
def service_image() -> str:
    """The Dockerfile built on the local Debian Python image (nothing can be pulled here)."""
    import world

    env = _docker_env()
    if not world.docker_alive() or not world.image_exists(WORLD_PYTHON_IMAGE):
        pytest.skip(f"needs the world's dockerd and {WORLD_PYTHON_IMAGE} (scripts/world.py up)")
    tag = "binder-world/binder-service-chart-test:dev"
    ca = world.CA_BUNDLE
    subprocess.run(
        [world.DOCKER_CLI, "build", "-q", "--build-arg", f"BASE_IMAGE={WORLD_PYTHON_IMAGE}",
         "--secret", f"id=pip_cert,src={ca}", "-t", tag, str(ROOT)],
        env=env, check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    return tag


@pytest.mark.docker
def test_image_runs_non_root_on_a_read_only_root(service_image: str) -> None:
    import world

    env = _docker_env()
    inspect = json.loads(
        subprocess.run([world.DOCKER_CLI, "image", "inspect", service_image], env=env, check=True,
                       capture_output=True, timeout=60).stdout
    )[0]["Config"]  # fmt: skip
    assert inspect["User"] == "65532:65532"
    assert inspect["Cmd"] == ["binder-service", "serve"]
    assert "8585/tcp" in inspect["ExposedPorts"]
    name = f"chart-image-test-{time.monotonic_ns()}"
    # As the chart runs it: read-only root, /tmp a tmpfs, no capabilities, no privilege escalation.
    subprocess.run(
        [world.DOCKER_CLI, "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
         "--security-opt", "no-new-privileges", "-p", "127.0.0.1::8585",
         "-e", "BINDER_SERVICE_HOST=0.0.0.0", "-e", "BINDER_SERVICE_API_TOKENS=t0ken", service_image],
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        port = (
            subprocess.run(
                [world.DOCKER_CLI, "port", name, "8585/tcp"],
                env=env,
                check=True,
                capture_output=True,
                timeout=30,
            )
            .stdout.decode()
            .split(":")[-1]
            .strip()
        )
        body: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not body:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/versions", timeout=5) as resp:
                    body = json.loads(resp.read())
            except OSError:
                time.sleep(0.5)
        logs = subprocess.run([world.DOCKER_CLI, "logs", name], env=env, capture_output=True, timeout=30)
        assert body.get("binder-service"), logs.stdout.decode() + logs.stderr.decode()
    finally:
        subprocess.run([world.DOCKER_CLI, "rm", "-f", name], env=env, capture_output=True, timeout=60)
