"""The service as a JupyterHub service, against a real JupyterHub + configurable-http-proxy.

Users, tokens, scopes and OAuth codes all come from the real hub; requests go through the real proxy
under /services/binder/, as JupyterHub users' requests do.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from binder_service.settings import Settings
from tests.support.jupyterhub import HubApi, running_hub
from tests.support.net import free_port
from tests.support.repos import buildable_repo
from tests.support.service import running_service, sse_messages

pytestmark = [pytest.mark.docker, pytest.mark.hub]

SERVICE_TOKEN = secrets.token_hex(16)
PREFIX = "/services/binder/"


@pytest.fixture(scope="module")
def hub_and_service(
    tmp_path_factory: pytest.TempPathFactory, make_settings: Callable[..., Settings]
) -> Iterator[tuple[HubApi, str]]:
    port = free_port()
    services = [
        {
            "name": "binder",
            "url": f"http://127.0.0.1:{port}",
            "api_token": SERVICE_TOKEN,
            "oauth_no_confirm": True,
        }
    ]
    roles = [
        {"name": "user", "scopes": ["self", "access:services!service=binder", "custom:binder:build"]},
        {"name": "binder-admin", "scopes": ["custom:binder:admin"], "users": ["ada"]},
    ]
    with running_hub(tmp_path_factory.mktemp("hub"), services=services, roles=roles) as hub:
        settings = make_settings(
            hub_api_url=hub.api_url,
            hub_api_token=SERVICE_TOKEN,
            hub_service_name="binder",
            providers=["git"],
            base_url=PREFIX,
            hub_auth_cache_ttl=0,  # a revoked token is refused at once (tested below)
            max_builds_per_user=1,
            max_requests_per_minute=20,
        )
        with running_service(settings, port=port):
            yield hub, hub.url + PREFIX


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _create(url: str, token: str | None, repo: str, **kw: Any) -> httpx.Response:
    headers = _auth(token) if token else {}
    return httpx.post(
        url + "api/v1/builds", json={"repo": repo, "ref": "main"}, headers=headers, timeout=30, **kw
    )


def test_no_invalid_or_expired_token_is_401(hub_and_service: tuple[HubApi, str], git_daemon_url: str) -> None:
    hub, url = hub_and_service
    expiring = hub.token("eve", expires_in=1)
    time.sleep(2.5)
    for token in (None, "not-a-token", expiring):
        r = _create(url, token, git_daemon_url + "whatever")
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "unauthorized"
    r = httpx.get(url + "build/git/x/main?build_only=true", timeout=10)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


def test_token_without_the_scope_is_403(hub_and_service: tuple[HubApi, str], git_daemon_url: str) -> None:
    hub, url = hub_and_service
    token = hub.token("frank", scopes=["read:users:activity!user=frank"])
    r = _create(url, token, git_daemon_url + "whatever")
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"


def test_binderhub_face_refusals_are_readable_by_sse_clients(
    hub_and_service: tuple[HubApi, str], git_daemon_url: str
) -> None:
    """BinderHub's JS client shows a non-200 as "403 - function text()...": SSE clients get an event."""
    hub, url = hub_and_service
    build = f"{url}build/git/{quote(git_daemon_url + 'whatever', safe='')}/main?build_only=true"
    no_scope = hub.token("frank", scopes=["read:users:activity!user=frank"])
    for token, status, code in ((no_scope, 403, "forbidden"), ("not-a-token", 401, "unauthorized")):
        [event] = sse_messages(build, headers=_auth(token), timeout=30)
        assert (event["phase"], event["status_code"], event["code"]) == ("failed", status, code)
        r = httpx.get(build, headers=_auth(token), timeout=30)  # not an SSE client: the HTTP status
        assert (r.status_code, r.json()["code"]) == (status, code)


def test_build_only_token_builds_through_the_binderhub_face(
    hub_and_service: tuple[HubApi, str], git_root: Path, git_daemon_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The jupyterhub-fancy-profiles flow: a user's Bearer token through the hub's proxy ends in ready."""
    hub, url = hub_and_service
    token = hub.token("grace", scopes=["custom:binder:build"])
    name, commit = buildable_repo(git_root)
    caplog.set_level(logging.DEBUG)
    events = sse_messages(
        f"{url}build/git/{quote(git_daemon_url + name, safe='')}/main?build_only=true", headers=_auth(token)
    )
    assert events[-1]["phase"] == "ready", events
    assert events[-1]["imageName"].endswith(":" + commit)
    assert token not in caplog.text
    assert SERVICE_TOKEN not in caplog.text
    assert token not in repr(events)


def test_users_see_and_cancel_only_their_own_builds(
    hub_and_service: tuple[HubApi, str], git_root: Path, git_daemon_url: str
) -> None:
    hub, url = hub_and_service
    alice, bob, ada = hub.token("alice"), hub.token("bob"), hub.token("ada")
    name, _ = buildable_repo(git_root, run="sleep 30")
    build = _create(url, alice, git_daemon_url + name).json()
    own = f"{url}api/v1/builds/{build['id']}"
    assert httpx.get(own, headers=_auth(alice), timeout=10).status_code == 200
    for path in ("", "/events"):
        r = httpx.get(own + path, headers=_auth(bob), timeout=10)
        assert r.status_code == 403
        assert r.json()["code"] == "forbidden"
    r = httpx.post(own + "/cancel", headers=_auth(bob), timeout=10)
    assert r.status_code == 403
    listed = httpx.get(url + "api/v1/builds", headers=_auth(bob), timeout=10).json()["builds"]
    assert build["id"] not in [b["id"] for b in listed]
    # The admin sees everyone's builds and may cancel them.
    listed = httpx.get(url + "api/v1/builds", headers=_auth(ada), timeout=10).json()["builds"]
    assert build["id"] in [b["id"] for b in listed]
    r = httpx.post(own + "/cancel", headers=_auth(ada), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"


def test_a_shared_build_is_not_cancelled_by_one_of_its_users(
    hub_and_service: tuple[HubApi, str], git_root: Path, git_daemon_url: str
) -> None:
    hub, url = hub_and_service
    ivan, judy = hub.token("ivan"), hub.token("judy")
    name, _ = buildable_repo(git_root, run="sleep 30")
    first = _create(url, ivan, git_daemon_url + name).json()
    second = _create(url, judy, git_daemon_url + name).json()
    assert first["id"] == second["id"]
    r = httpx.post(f"{url}api/v1/builds/{first['id']}/cancel", headers=_auth(ivan), timeout=10)
    assert r.status_code == 409
    assert r.json()["code"] == "build_shared"
    r = httpx.post(f"{url}api/v1/builds/{first['id']}/cancel", headers=_auth(hub.token("ada")), timeout=30)
    assert r.json()["status"] == "cancelled"


def test_per_user_build_limit(
    hub_and_service: tuple[HubApi, str], git_root: Path, git_daemon_url: str
) -> None:
    hub, url = hub_and_service
    kim = hub.token("kim")
    slow, _ = buildable_repo(git_root, run="sleep 30")
    other, _ = buildable_repo(git_root)
    build = _create(url, kim, git_daemon_url + slow)
    assert build.status_code == 201
    r = _create(url, kim, git_daemon_url + other)
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "too_many_builds"
    assert "wait for one to finish" in r.json()["message"]
    # Someone else is not affected.
    assert _create(url, hub.token("leo"), git_daemon_url + other).status_code == 201
    httpx.post(f"{url}api/v1/builds/{build.json()['id']}/cancel", headers=_auth(kim), timeout=30)


def test_per_user_request_rate(hub_and_service: tuple[HubApi, str], git_daemon_url: str) -> None:
    hub, url = hub_and_service
    mia = hub.token("mia")
    codes = [_create(url, mia, git_daemon_url + "missing-repo").json()["code"] for _ in range(21)]
    assert codes[:20] == ["repo_not_found"] * 20
    assert codes[20] == "too_many_requests"


def test_revoked_token_is_refused(hub_and_service: tuple[HubApi, str]) -> None:
    hub, url = hub_and_service
    token = hub.token("nina")
    assert httpx.get(url + "api/v1/builds", headers=_auth(token), timeout=10).status_code == 200
    tokens = hub.api("GET", "/users/nina/tokens").json()["api_tokens"]
    for t in tokens:
        assert hub.api("DELETE", f"/users/nina/tokens/{t['id']}").status_code == 204
    assert httpx.get(url + "api/v1/builds", headers=_auth(token), timeout=10).status_code == 401


def _login(hub: HubApi, client: httpx.Client, user: str) -> None:
    page = client.get(f"{hub.url}/hub/login")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    data = {"username": user, "password": "pw", **({"_xsrf": xsrf.group(1)} if xsrf else {})}
    # Not followed: the hub would go on to spawn a server, and this hub has no spawner that can.
    r = client.post(f"{hub.url}/hub/login", data=data, follow_redirects=False)
    assert r.status_code == 302, r.text


def test_browser_logs_in_through_the_hubs_oauth(hub_and_service: tuple[HubApi, str]) -> None:
    hub, url = hub_and_service
    with httpx.Client(follow_redirects=True, timeout=20) as browser:
        _login(hub, browser, "olga")
        r = browser.get(url + "api/v1/builds", headers={"Accept": "text/html"})
        assert r.status_code == 200, r.text
        assert r.json() == {"builds": []}
        hops = [str(h.url) for h in r.history]
        assert any("/hub/api/oauth2/authorize" in h and "code_challenge=" in h for h in hops), hops
        assert any("/services/binder/oauth_callback?code=" in h for h in hops), hops
        # From now on the service cookie alone is enough, for API calls too (no redirect).
        r = browser.get(url + "api/v1/builds", follow_redirects=False)
        assert r.status_code == 200, r.text


def test_an_api_client_without_a_token_is_not_redirected(hub_and_service: tuple[HubApi, str]) -> None:
    _, url = hub_and_service
    r = httpx.get(url + "api/v1/builds", headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 401


def test_oauth_state_mismatch_is_rejected(hub_and_service: tuple[HubApi, str]) -> None:
    hub, url = hub_and_service
    with httpx.Client(timeout=20) as browser:
        _login(hub, browser, "paul")
        start = browser.get(url + "api/v1/builds", headers={"Accept": "text/html"})
        assert start.status_code == 302
        assert "/hub/api/oauth2/authorize" in start.headers["location"]
        # The hub's answer, replayed with another state (as a login CSRF would).
        r = browser.get(url + "oauth_callback", params={"code": "stolen", "state": "forged"})
        assert r.status_code == 400
        assert r.json()["code"] == "invalid_request"
        assert "state" in r.json()["message"]
        assert "service-binder" not in browser.cookies


def test_login_next_is_never_an_open_redirect(hub_and_service: tuple[HubApi, str]) -> None:
    hub, url = hub_and_service
    with httpx.Client(follow_redirects=True, timeout=20) as browser:
        _login(hub, browser, "quinn")
        r = browser.get(url + "login", params={"next": "https://evil.example/"})
        assert str(r.url).startswith(url), r.url
