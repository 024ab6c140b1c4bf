"""`binder-service build` against a real running service: live progress, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.repos import buildable_repo


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "binder_service.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.docker
def test_build_shows_progress_and_exits_zero(service_url: str, git_root: Path, git_daemon_url: str) -> None:
    name, commit = buildable_repo(git_root, run="echo from-the-cli")
    result = run_cli("build", git_daemon_url + name, "--ref", "main", "--url", service_url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for marker in ("── fetching ──", "── building ──", "── ready ──", "from-the-cli"):
        assert marker in out
    assert out.strip().splitlines()[-1].startswith("ready: ")
    assert out.strip().endswith(":" + commit)


@pytest.mark.docker
def test_failed_build_exits_non_zero(service_url: str, git_root: Path, git_daemon_url: str) -> None:
    name, _ = buildable_repo(git_root, run="exit 4")
    result = run_cli("build", git_daemon_url + name, "--url", service_url)
    assert result.returncode == 1
    assert "failed:" in result.stderr
    assert "[build_failed]" in result.stderr


@pytest.mark.docker
def test_bad_input_exits_non_zero(service_url: str) -> None:
    result = run_cli("build", "--url", service_url, "--", "--upload-pack=touch /tmp/binder-cli-pwned")
    assert result.returncode == 1
    assert "[repo_not_allowed]" in result.stderr
    assert not Path("/tmp/binder-cli-pwned").exists()


def test_unreachable_service() -> None:
    result = run_cli(
        "build", "https://example.org/r", "--url", f"http://127.0.0.1:{free_port()}/", timeout=30
    )
    assert result.returncode == 1
    assert "[unreachable]" in result.stderr


def test_serve_refuses_to_listen_publicly_without_tokens() -> None:
    result = run_cli("serve", "--host", "0.0.0.0", timeout=30)
    assert result.returncode == 2
    assert "BINDER_SERVICE_API_TOKENS" in result.stderr
