"""Git credentials for private repositories: used to resolve and to build, never shown anywhere."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import stat
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from binder_service.builds.executor import BuildJob
from binder_service.builds.local import LocalExecutor
from binder_service.errors import RepoNotFound
from binder_service.providers import ResolvedRepo
from binder_service.providers.git.remote import GitRemote
from binder_service.security.credentials import GitCredentials, parse_credential
from tests.support.gitserve import serve_git_http, serve_threaded
from tests.support.repos import buildable_repo
from tests.support.service import sse_messages

TOKEN = "tok-" + uuid.uuid4().hex  # unique: any appearance anywhere is a leak


def test_parse_credential_and_store_lines() -> None:
    cred = parse_credential("https://alice:s3cr%40t@git.example.org")
    assert (cred.scheme, cred.host, cred.port, cred.username) == ("https", "git.example.org", 443, "alice")
    assert cred.password.get_secret_value() == "s3cr@t"
    assert cred.store_line() == "https://alice:s3cr%40t@git.example.org"
    assert parse_credential("http://bob:x@127.0.0.1:8080/").store_line() == "http://bob:x@127.0.0.1:8080"


@pytest.mark.parametrize(
    "line",
    [
        "https://git.example.org",  # no user or token
        f"https://{TOKEN}@git.example.org",  # no separate user
        f"ssh://git:{TOKEN}@git.example.org",  # not http(s)
        f"https://alice:{TOKEN}@git.example.org/org/repo",  # a path
        f"alice:{TOKEN}",
    ],
)
def test_bad_credentials_are_rejected_without_showing_the_secret(line: str) -> None:
    with pytest.raises(ValueError, match=r"user:token@host|whole host") as info:
        parse_credential(line)
    assert TOKEN not in str(info.value)


def test_tokens_become_credentials_for_their_hosts() -> None:
    creds = GitCredentials.from_config(
        [SecretStr("https://alice:one@git.example.org")],
        github_url="https://github.example.com",
        github_token=SecretStr("gh-token"),
        gitlab_url="https://gitlab.example.com:8443",
        gitlab_token=SecretStr("gl-token"),
    )
    assert creds.store_text().splitlines() == [
        "https://alice:one@git.example.org",
        "https://x-access-token:gh-token@github.example.com",
        "https://oauth2:gl-token@gitlab.example.com:8443",
    ]
    assert creds.for_url("https://git.example.org/org/repo.git") is not None
    assert creds.for_url("http://git.example.org/org/repo.git") is None  # another origin: scheme
    assert creds.for_url("https://git.example.org:444/org/repo.git") is None  # port
    assert creds.for_url("https://evil.example/git.example.org") is None


def _executor(tmp_path: Path, creds: GitCredentials | None) -> LocalExecutor:
    return LocalExecutor(
        docker_host="unix:///nonexistent.sock",
        docker_config=None,
        command=["repo2docker"],
        extra_args=[],
        allowed_git_protocols=["https"],
        allow_local=False,
        environ={
            "PATH": os.environ.get("PATH", ""),
            "GIT_CONFIG_KEY_3": "x",
            "BINDER_SERVICE_GIT_CREDENTIALS": "y",
        },
        docker_timeout=1,
        git_credentials=creds,
    )


async def test_local_executor_gives_git_a_private_credential_file(tmp_path: Path) -> None:
    creds = GitCredentials([parse_credential(f"https://alice:{TOKEN}@git.example.org")])
    ex = _executor(tmp_path, creds)
    repo = ResolvedRepo(
        "git", "https://git.example.org/org/repo", "main", "a" * 40, "git.example.org/org/repo"
    )
    build = BuildJob(build_id="b", image_name="img:tag", repo=repo, push=False)
    try:
        assert not any(TOKEN in p.read_text() for p in ex.workdir.rglob("*") if p.is_file())
        async with ex._build_dir(build) as (env, _):  # what one build's repo2docker runs with
            assert env["GIT_CONFIG_COUNT"] == "1"
            assert env["GIT_CONFIG_KEY_0"] == "credential.helper"
            assert "GIT_CONFIG_KEY_3" not in env  # an inherited entry would shift into our range
            assert "BINDER_SERVICE_GIT_CREDENTIALS" not in env
            store = Path(env["GIT_CONFIG_VALUE_0"].removeprefix("store --file="))
            assert stat.S_IMODE(store.stat().st_mode) == 0o600
            assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
            assert store.read_text() == f"https://alice:{TOKEN}@git.example.org\n"
            assert not any(TOKEN in value for value in env.values())
            assert Path(env["TMPDIR"]).parent == store.parent  # the clone goes beside it, and with it
        assert not store.exists()  # the secret lives only as long as the build that needs it
        assert not store.parent.exists()
        argv = ex.argv(build)
        assert not any(TOKEN in arg for arg in argv)
    finally:
        await ex.aclose()
    assert not ex.workdir.exists()
    # Without credentials nothing about git's configuration changes.
    plain = _executor(tmp_path, None)
    async with plain._build_dir(build) as (env, _):
        assert "GIT_CONFIG_COUNT" not in env
    await plain.aclose()


# --- resolving ----------------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def recorder() -> Iterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Recorder,), {"seen": seen}))
    server.daemon_threads = True
    with serve_threaded(server) as url:
        yield url, seen


class _Redirect(BaseHTTPRequestHandler):
    target = ""
    seen: list[str | None]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(301)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


async def test_credentials_never_follow_a_redirect_to_another_origin() -> None:
    with recorder() as (other, other_seen):
        seen: list[str | None] = []
        server = ThreadingHTTPServer(
            ("127.0.0.1", 0), type("R", (_Redirect,), {"target": other.rstrip("/"), "seen": seen})
        )
        server.daemon_threads = True
        with serve_threaded(server) as start:
            creds = GitCredentials([parse_credential(start.replace("http://", f"http://alice:{TOKEN}@"))])
            async with httpx.AsyncClient() as http:
                remote = GitRemote(http, timeout=2, credentials=creds)
                with pytest.raises(RepoNotFound) as info:
                    await remote.resolve(start + "repo", "main")
    expected = "Basic " + base64.b64encode(f"alice:{TOKEN}".encode()).decode()
    assert seen == [expected]  # the configured origin got it
    assert other_seen == [None]  # the redirect's target did not
    assert TOKEN not in str(info.value)


# --- a private repository, resolved and built for real -----------------------------------------------


@pytest.fixture
def private_git(git_root: Path) -> Iterator[str]:
    """Smart HTTP for `git_root`, but only with alice's token."""
    with serve_git_http(git_root, auth=("alice", TOKEN)) as url:
        yield url


@pytest.mark.docker
def test_private_repository_builds_with_credentials_and_never_shows_them(
    start_service: Callable[..., AbstractContextManager[str]],
    git_root: Path,
    private_git: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    name, commit = buildable_repo(git_root, prefix="private")
    # A repo2docker that records what it was given, then runs the real one.
    record = tmp_path / "record"
    wrapper = tmp_path / "r2d"
    real = Path(sys.executable).parent / "repo2docker"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}.argv\nenv > {record}.env\nexec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    credential = private_git.replace("http://", f"http://alice:{TOKEN}@").rstrip("/")
    with start_service(git_credentials=[credential], repo2docker_command=[str(wrapper)]) as service:
        r = httpx.post(
            f"{service}api/v1/builds", json={"repo": private_git + name, "ref": "main"}, timeout=30
        )
        assert r.status_code == 201, r.text
        build = r.json()
        assert build["commit"] == commit
        events = sse_messages(f"{service}api/v1/builds/{build['id']}/events")
        assert events[-1]["phase"] == "ready", events[-3:]
        listed = httpx.get(f"{service}api/v1/builds/{build['id']}", timeout=10).text
        metrics = httpx.get(f"{service}metrics", timeout=10).text

    argv = Path(f"{record}.argv").read_text()
    env = Path(f"{record}.env").read_text()
    assert private_git + name in argv  # the URL repo2docker fetched: no credentials in it
    assert "GIT_CONFIG_VALUE_0=store --file=" in env
    for text in (argv, env, str(events), listed, metrics, caplog.text, r.text):
        assert TOKEN not in text


@pytest.mark.docker
def test_private_repository_without_credentials_is_a_clear_error(
    start_service: Callable[..., AbstractContextManager[str]], git_root: Path, private_git: str
) -> None:
    name, _ = buildable_repo(git_root, prefix="private")
    with start_service() as service:
        r = httpx.post(
            f"{service}api/v1/builds", json={"repo": private_git + name, "ref": "main"}, timeout=30
        )
        assert r.status_code == 404
        assert r.json()["code"] == "repo_not_found"
        assert "not found or not public" in r.json()["message"]


@pytest.mark.docker
def test_user_url_with_credentials_is_refused(
    start_service: Callable[..., AbstractContextManager[str]], private_git: str
) -> None:
    with start_service() as service:
        url = private_git.replace("http://", f"http://alice:{TOKEN}@") + "repo"
        r = httpx.post(f"{service}api/v1/builds", json={"repo": url, "ref": "main"}, timeout=30)
        assert r.status_code == 403
        assert r.json()["code"] == "repo_not_allowed"
        assert "git_credentials" in r.json()["message"]
        assert TOKEN not in r.text
