"""Fast checks of the pieces of authentication that need no hub."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr
from starlette.requests import Request

from binder_service.auth import OAuthFlow, RequestRate, StaticTokens
from binder_service.auth.identity import Identity
from binder_service.auth.tokens import header_token
from binder_service.errors import TooManyRequests
from binder_service.settings import Settings


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("token abc", "abc"),
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("TOKEN abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("", None),
    ],
)
def test_header_token(header: str, token: str | None) -> None:
    assert header_token(_request({"Authorization": header} if header else {})) == token


def test_static_tokens_identify_by_index_and_are_admins() -> None:
    tokens = StaticTokens([SecretStr("one"), SecretStr("two")])
    assert tokens.identify("two") == Identity(name="token-1", kind="token", admin=True)
    assert tokens.identify("three") is None
    assert not StaticTokens([])


def test_request_rate_is_a_sliding_minute_per_user() -> None:
    rate = RequestRate(2)
    rate.check("a", now=0.0)
    rate.check("a", now=1.0)
    rate.check("b", now=1.0)  # each user has their own budget
    with pytest.raises(TooManyRequests, match="try again in 59s"):
        rate.check("a", now=1.5)
    rate.check("a", now=60.5)  # the first request left the window


def test_request_rate_memory_is_bounded() -> None:
    rate = RequestRate(1, max_users=3)
    for n in range(10):
        rate.check(f"user-{n}", now=0.0)
    assert len(rate._seen) == 3


def test_identity_sees_own_builds_and_admin_sees_all() -> None:
    alice = Identity(name="alice", kind="user")
    admin = Identity(name="root", kind="user", admin=True)
    assert alice.may_see({"alice", "bob"})
    assert not alice.may_see({"bob"})
    assert admin.may_see(set())


def test_hub_settings_come_from_jupyterhub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
        "JUPYTERHUB_API_TOKEN": "s3cr3t-value",
        "JUPYTERHUB_SERVICE_NAME": "builder",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/builder/",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:10101",
        "JUPYTERHUB_CLIENT_ID": "service-builder",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.hub_enabled
    assert settings.base_url == "/services/builder/"
    assert (settings.host, settings.port) == ("0.0.0.0", 10101)
    assert "access:services!service=builder" in settings.effective_build_scopes()
    assert "s3cr3t-value" not in repr(settings)
    # Explicit settings win over the hub's service URL.
    monkeypatch.setenv("BINDER_SERVICE_PORT", "9000")
    assert Settings().port == 9000


def test_login_state_cookie_always_splits_back_into_its_parts() -> None:
    # PKCE verifiers hold ".", "~", "-" and "_": the cookie's separator must be none of them.
    flow = OAuthFlow(
        None,  # type: ignore[arg-type]  # starting a login does not talk to the hub
        client_id="service-binder",
        authorize_url="/hub/api/oauth2/authorize",
        callback_url="/services/binder/oauth_callback",
        base_url="/services/binder/",
    )
    for _ in range(300):
        login = flow.start("/services/binder/api/v1/builds?x=1")
        state = parse_qs(urlsplit(login.url).query)["state"][0]
        parts = login.state_cookie.split(":")
        assert len(parts) == 3
        assert parts[0] == state
    assert flow._local("https://evil.example/") == "/services/binder/"
    assert flow._local("//evil.example/services/binder/") == "/services/binder/"
