"""Spawning with "build from repository" through JupyterHub's REST API: real hub, service, builds, servers."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from binder_service_hub.spawner import TOKEN_NOTE

from tests.support.hub import Hub
from tests.support.records import MakeRepo
from tests.support.service import sse_messages
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.hub]


def server_file(hub: Hub, user: str, path: str) -> str:
    """A file's content from the user's running server, through the proxy, with a token of the user's."""
    token = hub.user_token(user)
    r = httpx.get(
        f"{hub.url}/user/{user}/api/contents/{path}", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    content: str = r.json()["content"]
    return content


def spawn(hub: Hub, user: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Ask for the server and follow the spawn's progress events (as the spawn-pending page does)."""
    r = hub.spawn(user, options)
    assert r.status_code in (201, 202), r.text
    return hub.progress(user)


def builds_of(hub: Hub, image: str) -> list[dict[str, Any]]:
    """binder-service's builds (not cached answers) of `image`, through the proxy, as a binder admin."""
    r = httpx.get(
        f"{hub.service_url}api/v1/builds",
        headers={"Authorization": f"token {hub.admin_token}"},
        params={"limit": 1000},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return [b for b in r.json()["builds"] if b["image_name"] == image]


def test_spawn_builds_and_starts_the_built_image(hub: Hub, make_hub_repo: MakeRepo, username: str) -> None:
    repo, marker = make_hub_repo()
    events = spawn(hub, username, {"binder_repo": repo, "binder_ref": "main"})
    messages = [e.get("message", "") for e in events]
    assert events[-1].get("ready") is True, events[-3:]
    assert any(m.startswith("Building:") for m in messages), messages
    image = next(m for m in messages if m.startswith("Starting your server with image ")).rsplit(" ", 1)[1]
    assert server_file(hub, username, "marker.txt").strip() == marker
    hub.stop(username)

    # (b) The same repository and ref again: the image exists, so the server starts without a build.
    started = time.monotonic()
    events = spawn(hub, username, {"binder_repo": repo, "binder_ref": "main"})
    again = time.monotonic() - started
    messages = [e.get("message", "") for e in events]
    assert events[-1].get("ready") is True, events[-3:]
    assert "Found built image" in messages, messages
    assert not any(m.startswith(("Building:", "Fetching:")) for m in messages), messages
    assert len(builds_of(hub, image)) == 1  # the first spawn's build, and no other
    assert server_file(hub, username, "marker.txt").strip() == marker
    print(f"\nsecond spawn of the same repo+ref (no build): {again:.1f}s")
    hub.stop(username)


def test_failed_build_fails_the_spawn_with_the_builds_message(
    hub: Hub, make_hub_repo: MakeRepo, username: str
) -> None:
    repo, _ = make_hub_repo(fail=True)
    events = spawn(hub, username, {"binder_repo": repo, "binder_ref": "main"})
    final = events[-1]
    assert final.get("failed") is True, events[-3:]
    # The build's own failure, as binder-service reported it, is what the spawn page shows.
    failed_build = next(b for b in reversed(builds_of_repo(hub, repo)) if b["status"] == "failed")
    build_message = failed_build["error"]["message"].strip()
    assert build_message
    assert final["message"] == f"Spawn failed: {build_message}", final
    assert any(e.get("message", "").startswith("Build failed: ") for e in events), events
    assert hub.server(username) is None
    assert not any(t["note"] == TOKEN_NOTE for t in hub.tokens(username))


def builds_of_repo(hub: Hub, repo: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{hub.service_url}api/v1/builds",
        headers={"Authorization": f"token {hub.admin_token}"},
        params={"limit": 1000},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return [b for b in r.json()["builds"] if b["repo"] == repo]


def test_bad_repository_fails_the_spawn_with_a_clear_message(hub: Hub, username: str) -> None:
    events = spawn(hub, username, {"binder_repo": "git://127.0.0.1:1/nothing-here", "binder_ref": "main"})
    final = events[-1]
    assert final.get("failed") is True, events[-3:]
    assert final["message"].startswith("Spawn failed: "), final
    assert "nothing-here" in final["message"] or "127.0.0.1:1" in final["message"], final
    assert hub.server(username) is None


def test_build_token_is_revoked_after_the_spawn(hub: Hub, make_hub_repo: MakeRepo, username: str) -> None:
    # A build that takes a few seconds, so the token can be seen while it is in use.
    repo, _ = make_hub_repo(run="sleep 4")
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def watch_tokens() -> None:
        while not done.is_set():
            seen.extend(t for t in hub.tokens(username) if t["note"] == TOKEN_NOTE)
            time.sleep(0.1)

    hub.add_user(username)
    watcher = threading.Thread(target=watch_tokens, daemon=True)
    watcher.start()
    try:
        events = spawn(hub, username, {"binder_repo": repo, "binder_ref": "main"})
    finally:
        done.set()
        watcher.join(10)
    assert events[-1].get("ready") is True, events[-3:]
    assert seen, "no build token was seen while the build ran"
    token = seen[0]
    # Building, plus only the identity every hub token carries (its owner's name, groups).
    assert "custom:binder:build" in token["scopes"]
    others = set(token["scopes"]) - {"custom:binder:build"}
    assert all(s.startswith("read:users:") and s.endswith(f"!user={username}") for s in others), others
    assert token["expires_at"] is not None  # short-lived even if the hub died before revoking it
    left = [t for t in hub.tokens(username) if t["note"] == TOKEN_NOTE]
    assert left == []
    hub.stop(username)


# JupyterHub's tokens are uuid4 hex strings.
HUB_TOKEN = re.compile(r"(?<![0-9a-f])[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}(?![0-9a-f])")


def test_no_token_in_the_hub_or_service_logs(hub: Hub, make_hub_repo: MakeRepo, username: str) -> None:
    # Activity with every kind of token: a spawn's build tokens, a user's token on the BinderHub API.
    repo, _ = make_hub_repo()
    events = spawn(hub, username, {"binder_repo": repo, "binder_ref": "main"})
    assert events[-1].get("ready") is True, events[-3:]
    user_token = hub.user_token(username)
    url = f"{hub.service_url}build/git/{quote(repo, safe='')}/main?build_only=true"
    assert sse_messages(url, headers={"Authorization": f"Bearer {user_token}"})[-1]["phase"] == "ready"
    hub.stop(username)

    log = hub.log_text()  # the hub's, the proxy's and binder-service's output (a managed service)
    assert "POST /services/binder/api/v1/builds" in log  # the service's own log lines are in it
    for secret in (user_token, hub.admin_token, hub.password):
        assert secret not in log
    # JupyterHub itself logs the session id its xsrf cookie is bound to (not an API token): skip those.
    lines = [line for line in log.splitlines() if "JupyterHub _xsrf_utils" not in line]
    assert [m for line in lines for m in HUB_TOKEN.findall(line)] == []
    # Nor in what the spawn-pending page showed.
    assert HUB_TOKEN.findall(json.dumps(events)) == []


def test_stopping_a_spawn_during_its_build_revokes_the_token(
    hub: Hub, make_hub_repo: MakeRepo, username: str
) -> None:
    repo, _ = make_hub_repo(run="sleep 20")
    r = hub.spawn(username, {"binder_repo": repo, "binder_ref": "main"})
    assert r.status_code in (201, 202), r.text
    wait_until(lambda: any(t["note"] == TOKEN_NOTE for t in hub.tokens(username)), what="the build token")
    # The user gives up while the image is still building.
    stop = hub.api("DELETE", f"/users/{username}/server", timeout=60)
    assert stop.status_code in (202, 204), stop.text
    hub.wait_stopped(username)
    wait_until(
        lambda: not any(t["note"] == TOKEN_NOTE for t in hub.tokens(username)),
        timeout=10,
        what="the build token to go with the cancelled spawn",
    )
