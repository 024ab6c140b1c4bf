"""One filtered environment for every subprocess: the service's secrets never reach git, ssh, repo2docker."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from binder_service.errors import BinderError
from binder_service.providers.git.remote import GitRemote
from binder_service.security.child_env import child_environ

SECRETS = {
    "BINDER_SERVICE_API_TOKENS": "api-token-s3cret",
    "BINDER_SERVICE_GIT_CREDENTIALS": "https://u:git-s3cret@example.org",
    "JUPYTERHUB_API_TOKEN": "hub-s3cret",
    "binder_service_github_token": "lower-s3cret",  # pydantic-settings reads names case-insensitively
}


def test_child_environ_drops_private_variables() -> None:
    env = child_environ({"PATH": "/usr/bin", "HOME": "/root", **SECRETS}, LC_ALL="C")
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C"}


async def test_ssh_ls_remote_runs_without_the_service_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)  # also in this process's own environment
    dump = tmp_path / "env.txt"
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text(
        f"#!/bin/sh\nenv > {dump}\necho 'ssh: connect to host: Connection refused' >&2\nexit 255\n"
    )
    fake_ssh.chmod(0o755)
    environ = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path), **SECRETS}
    async with httpx.AsyncClient() as http:
        remote = GitRemote(http, timeout=10, environ=environ)
        with pytest.raises(BinderError, match="Connection refused"):
            await remote.list_refs("ssh://git@127.0.0.1/org/repo.git")
    seen = dump.read_text()
    assert "GIT_TERMINAL_PROMPT=0" in seen  # it is the child's environment
    for value in SECRETS.values():
        assert value not in seen
