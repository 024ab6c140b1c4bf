"""CORS (BINDER_SERVICE_CORS_ALLOW_ORIGINS) on both faces, and cookies never accepted cross-origin."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from binder_service.api.cors import CrossOrigin
from binder_service.settings import Settings
from tests.support.served import ALLOWED_ORIGIN, Served

OTHER_ORIGIN = "http://elsewhere.test"


def _preflight(served: Served, path: str, origin: str, method: str = "GET") -> httpx.Response:
    return httpx.options(
        served.url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, last-event-id",
        },
    )


@pytest.mark.parametrize(
    ("path", "method"),
    [("build/gh/org/repo/main", "GET"), ("api/v1/builds", "POST"), ("api/v1/builds/x/events", "GET")],
)
def test_preflight_with_authorization_succeeds_for_an_allowed_origin(
    served: Served, path: str, method: str
) -> None:
    r = _preflight(served, path, ALLOWED_ORIGIN, method)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "last-event-id"} <= allowed
    assert method in r.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in r.headers


def test_preflight_from_another_origin_is_refused_without_cors_headers(served: Served) -> None:
    r = _preflight(served, "api/v1/builds", OTHER_ORIGIN, "POST")
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_request"
    assert not [h for h in r.headers if h.startswith("access-control-")]


def test_allowed_origin_gets_cors_headers_on_the_build_stream_and_native_api(served: Served) -> None:
    headers = {**served.auth, "Origin": ALLOWED_ORIGIN, "Accept": "text/event-stream"}
    stream = httpx.get(served.url + "build/gh/org/re%0Apo/main?build_only=true", headers=headers)
    assert stream.headers["content-type"].startswith("text/event-stream")
    native = httpx.get(served.url + "api/v1/builds", headers={**served.auth, "Origin": ALLOWED_ORIGIN})
    assert native.status_code == 200
    refused = httpx.get(served.url + "build/gh/o/r/main?build_only=true", headers={"Origin": ALLOWED_ORIGIN})
    assert refused.status_code == 401  # errors are readable cross-origin too
    for r in (stream, native, refused):
        assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "access-control-allow-credentials" not in r.headers


def test_other_origins_get_no_cors_headers(served: Served) -> None:
    r = httpx.get(served.url + "api/v1/builds", headers={**served.auth, "Origin": OTHER_ORIGIN})
    assert r.status_code == 200
    assert not [h for h in r.headers if h.startswith("access-control-")]


async def _echo_cookies(scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse({"cookie": Request(scope).headers.get("cookie")})(scope, receive, send)


@pytest.mark.parametrize("origins", [[], [ALLOWED_ORIGIN]], ids=["cors-off", "cors-on"])
@pytest.mark.parametrize(
    ("origin", "kept"),
    [
        (None, True),  # same-origin GETs and navigations send no Origin
        ("http://service.test", True),  # our own origin
        (ALLOWED_ORIGIN, False),  # allowed for CORS, but never with cookies
        (OTHER_ORIGIN, False),
        ("null", False),  # sandboxed frames, cross-origin redirects
    ],
)
async def test_cookies_never_cross_origins(origins: list[str], origin: str | None, kept: bool) -> None:
    app = CrossOrigin(_echo_cookies, allow_origins=origins)
    headers = {"Cookie": "binder-service-token=abc"} | ({"Origin": origin} if origin else {})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        r = await client.get("/api/v1/builds", headers=headers)
    assert r.json()["cookie"] == ("binder-service-token=abc" if kept else None)


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("", []),
        (
            "https://hub.example.org, http://127.0.0.1:8000/",
            ["https://hub.example.org", "http://127.0.0.1:8000"],
        ),
        ('["*"]', ["*"]),
    ],
)
def test_origins_setting(monkeypatch: pytest.MonkeyPatch, value: str, origins: list[str]) -> None:
    monkeypatch.setenv("BINDER_SERVICE_CORS_ALLOW_ORIGINS", value)
    assert Settings().cors_allow_origins == origins


@pytest.mark.parametrize(
    "value", ["hub.example.org", "https://hub.example.org/path", "ftp://x", "https://user@hub.example.org"]
)
def test_origins_setting_refuses_what_is_not_an_origin(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BINDER_SERVICE_CORS_ALLOW_ORIGINS", value)
    with pytest.raises(ValidationError, match="is not a web origin"):
        Settings()
