"""`binder-service build` against a real running service: live progress, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port
from tests.support.repos import buildable_repo
from tests.support.serve_process import serve_process


def run_cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "binder_service.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
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


def test_serve_names_a_misspelled_setting_before_refusing() -> None:
    """The misspelled token variable is why serve refuses: it says so, with the real name."""
    env = {**os.environ, "BINDER_SERVICE_API_TOKEN": "t0ken"}
    result = run_cli("serve", "--host", "0.0.0.0", timeout=30, env=env)
    assert result.returncode == 2
    assert (
        "binder-service: warning: BINDER_SERVICE_API_TOKEN is not a setting and is ignored; "
        "did you mean BINDER_SERVICE_API_TOKENS?"
    ) in result.stderr
    assert "t0ken" not in result.stderr


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().partition("=")[::2] for e in raw if e)


@pytest.mark.parametrize(("given", "used"), [(None, "malloc"), ("pymalloc", "pymalloc")])
def test_serve_runs_on_the_services_allocator_unless_the_operator_chose_one(
    given: str | None, used: str, tmp_path: Path
) -> None:
    """The allocator is read when Python starts: `serve` starts itself again (same process) with it set.
    Its children (git here, repo2docker) start on the allocator the operator chose, or Python's default."""
    dump = tmp_path / "child-env.txt"
    fake_ssh = tmp_path / "bin" / "ssh"  # what `git ls-remote ssh://...` runs: it shows its environment
    fake_ssh.parent.mkdir()
    fake_ssh.write_text(f"#!/bin/sh\nenv > {dump}\necho 'ssh: connect: Connection refused' >&2\nexit 255\n")
    fake_ssh.chmod(0o755)
    env = {
        "PATH": f"{fake_ssh.parent}:{os.environ['PATH']}",
        "BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS": "true",
        "HOME": os.environ.get("HOME", "/root"),
        "BINDER_SERVICE_STATE_DIR": str(tmp_path / "state"),
        "BINDER_SERVICE_REGISTRY_URL": "",
    }
    if given is not None:
        env["PYTHONMALLOC"] = given
    with serve_process(env, tmp_path / "serve.log") as (proc, url):
        assert _environ(proc.pid).get("PYTHONMALLOC") == used  # the pid we started, now serving
        assert httpx.get(f"{url}versions", timeout=10).status_code == 200
        body = {"repo": "ssh://git@127.0.0.1/org/repo.git", "ref": "main"}
        reply = httpx.post(f"{url}api/v1/builds", json=body, timeout=60)
        assert reply.status_code == 502, reply.text  # repo_unreachable: what the fake ssh said
    child = dict(line.partition("=")[::2] for line in dump.read_text().splitlines())
    assert child.get("GIT_TERMINAL_PROMPT") == "0"  # it is git's child
    assert child.get("PYTHONMALLOC") == given
