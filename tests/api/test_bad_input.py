"""Bad input at the edges, against `binder-service serve` itself: always JSON with a code, or the
BinderHub face's `failed` event; never a 500, a 404 for a spec, or uvicorn's plain-text 400."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.served import MAX_INPUT, TOKEN, Served

SSE = {"Accept": "text/event-stream"}

URLSPLIT_REFUSES = [
    "git://[127.0.0.1:19418/x",
    "http://[zz]/x",
    "ssh://[-oProxyCommand=x]/x",
    "http://ex\u2100.com/x",
    "https://a\uff03b/x",
]


def events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


def raw(served: Served, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library tidies them up); the status, headers and body."""
    with socket.create_connection((served.host, served.port), timeout=10) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def get(path: bytes, *extra: bytes) -> bytes:
    auth = f"Authorization: token {TOKEN}".encode()
    return b"\r\n".join([b"GET " + path + b" HTTP/1.1", b"Host: 127.0.0.1", auth, *extra, b"", b""])


# --- 5: URLs urlsplit refuses ---------------------------------------------------------------------


@pytest.mark.parametrize("url", URLSPLIT_REFUSES)
def test_unparseable_urls_are_invalid_spec_on_both_faces(served: Served, url: str) -> None:
    r = httpx.post(served.url + "api/v1/builds", json={"repo": url, "ref": "main"}, headers=served.auth)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_spec"
    r = httpx.get(
        f"{served.url}build/git/{quote(url, safe='')}/main?build_only=true", headers={**served.auth, **SSE}
    )
    [event] = events(r)
    assert event["phase"] == "failed"
    assert event["code"] == "invalid_spec"


# --- 6: newlines in a BinderHub spec --------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "gh/org/re%0Apo/main",
        "gh/org/repo/ma%0D%0Ain",
        "gh/org%0A/repo/main",
        "git/https%3A%2F%2Fexample.org%2Fx%0D%0A/main",
        "git/https%3A%2F%2Fexample.org%2Fx/main%0A",
    ],
)
def test_a_newline_in_a_spec_is_a_failed_event_not_404(served: Served, spec: str) -> None:
    r = httpx.get(f"{served.url}build/{spec}?build_only=true", headers={**served.auth, **SSE})
    [event] = events(r)
    assert event["phase"] == "failed"
    assert event["code"] in ("invalid_spec", "repo_not_allowed")


# --- 7: what uvicorn used to answer itself, in text/plain -----------------------------------------


def test_non_numeric_content_length_is_json(served: Served) -> None:
    body = b'{"repo": "x"}'
    status, headers, answer = raw(
        served,
        b"POST /services/binder/api/v1/builds HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: ten\r\n\r\n" + body,
    )
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(answer)["code"] == "invalid_request"


@pytest.mark.parametrize(
    "path",
    [
        b"/services/binder/build/gh/" + b"a" * 1_000_000 + b"/repo/main?build_only=true",  # a 1 MB spec
        b"/services/binder/build/gh/org/repo/" + b"r" * 100_000 + b"?build_only=true",  # a 100 KB ref
    ],
    ids=["1MB-spec", "100KB-ref"],
)
def test_an_oversized_request_head_is_input_too_large(served: Served, path: bytes) -> None:
    status, headers, answer = raw(served, get(path, b"Accept: text/event-stream"))
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(answer)["code"] == "input_too_large"


def test_an_oversized_header_is_input_too_large(served: Served) -> None:
    status, _, answer = raw(served, get(b"/services/binder/versions", b"X-Big: " + b"x" * 70_000))
    assert status == 413
    assert json.loads(answer)["code"] == "input_too_large"


@pytest.mark.parametrize(
    "request_bytes",
    [
        get(b"/services/binder/build/gh/org/r\xc3\xa9po/main?build_only=true"),  # raw UTF-8 in the path
        get(b"/services/binder/build/gh/org/r\xffpo/main"),  # not even UTF-8
        get(b"/services/binder/versions", b"Bad Header: x"),  # a space in a header name
    ],
    ids=["utf8-path", "latin1-path", "bad-header-name"],
)
def test_unparseable_requests_are_json_invalid_request(served: Served, request_bytes: bytes) -> None:
    status, headers, answer = raw(served, request_bytes)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(answer)["code"] == "invalid_request"


def test_the_service_still_answers_after_refusals(served: Served) -> None:
    raw(served, get(b"/services/binder/" + b"a" * 200_000))
    assert httpx.get(served.url + "versions").status_code == 200


def test_a_head_just_under_the_limit_reaches_the_app(served: Served) -> None:
    status, _, answer = raw(served, get(b"/services/binder/versions", b"X-Pad: " + b"x" * 60_000))
    assert status == 200, answer


# --- 8: 405 keeps Allow ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "api/v1/builds", "GET, POST"),
        ("PUT", "versions", "GET"),
        ("GET", "api/v1/builds/abc/cancel", "POST"),
        ("POST", "build/gh/org/repo/main", "GET"),
    ],
)
def test_405_names_every_allowed_method(served: Served, method: str, path: str, allow: str) -> None:
    r = httpx.request(method, served.url + path, headers=served.auth)
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"
    assert r.headers["allow"] == allow


# --- auth refusals on the BinderHub face ----------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_an_sse_client_gets_a_refusal_as_a_failed_event(served: Served, token: str | None) -> None:
    url = served.url + "build/gh/org/repo/main?build_only=true"
    auth = {"Authorization": f"token {token}"} if token else {}
    [event] = events(httpx.get(url, headers={**auth, **SSE}))
    assert event["phase"] == "failed"
    assert event["status_code"] == 401
    assert event["code"] == "unauthorized"
    assert event["message"].endswith("\n")
    # Clients that do not ask for an event stream keep the HTTP status.
    r = httpx.get(url, headers=auth)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


def test_native_face_refusals_stay_http_errors(served: Served) -> None:
    r = httpx.get(served.url + "api/v1/builds/abc/events", headers=SSE)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


# --- 9: the OpenAPI schema says what the service does ---------------------------------------------


def _schema(served: Served) -> dict[str, Any]:
    r = httpx.get(served.url + "openapi.json")
    assert r.status_code == 200
    schema: dict[str, Any] = r.json()
    return schema


def test_schema_length_limits_are_the_enforced_ones(served: Served) -> None:
    fields = _schema(served)["components"]["schemas"]["BuildCreate"]["properties"]
    assert fields["repo"]["maxLength"] == fields["ref"]["maxLength"] == MAX_INPUT
    url = served.url + "api/v1/builds"
    # At the limit: past the length check (refused for what it is: a remote-helper URL, no network).
    repo = "ext::" + "a" * (MAX_INPUT - 5)
    r = httpx.post(url, json={"repo": repo, "ref": "main"}, headers=served.auth)
    assert (r.status_code, r.json()["code"]) == (403, "repo_not_allowed")
    r = httpx.post(url, json={"repo": "ext::x", "ref": "a" * MAX_INPUT}, headers=served.auth)
    assert (r.status_code, r.json()["code"]) == (403, "repo_not_allowed")
    # One over: 422, for either field, as the schema's own validation says (naming the field).
    for name, body in (
        ("repo", {"repo": repo + "a", "ref": "main"}),
        ("ref", {"repo": "ext::x", "ref": "a" * (MAX_INPUT + 1)}),
    ):
        r = httpx.post(url, json=body, headers=served.auth)
        assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
        assert r.json()["message"] == f"{name}: longer than {MAX_INPUT} characters"


def test_binderhub_route_documents_the_statuses_it_answers(served: Served) -> None:
    paths = _schema(served)["paths"]
    documented = {int(s) for s in paths["/services/binder/build/{provider}/{spec}"]["get"]["responses"]}
    base = served.url + "build/"
    observed = {
        httpx.get(base + "gh/org/repo/main?build_only=true").status_code,  # no token
        httpx.get(served.url + "build", headers=served.auth).status_code,  # no such path
        httpx.get(base + "gh/o/r/main?build_only=true", headers={**served.auth, **SSE}).status_code,
        raw(served, get(b"/services/binder/build/gh/o/r\xff/main"))[0],
        raw(served, get(b"/services/binder/build/gh/o/r/" + b"x" * 70_000))[0],
    }
    assert observed == {200, 401, 404, 400, 413}
    assert observed <= documented
    assert {401, 403, 404}.issubset(documented)
    assert 422 not in documented  # nothing this route takes can fail validation


def test_native_create_documents_the_statuses_it_answers(served: Served) -> None:
    paths = _schema(served)["paths"]
    documented = {int(s) for s in paths["/services/binder/api/v1/builds"]["post"]["responses"]}
    url = served.url + "api/v1/builds"
    observed = {
        httpx.post(url, json={"repo": "http://[zz]/x"}, headers=served.auth).status_code,  # 400
        httpx.post(url, json={"repo": "x"}).status_code,  # 401
        httpx.post(url, json={"repo": "ext::x"}, headers=served.auth).status_code,  # 403
        httpx.post(url, json={"repo": "x", "provider": "nope"}, headers=served.auth).status_code,  # 404
        httpx.post(url, content=b"{" + b" " * 70_000 + b"}", headers=served.auth).status_code,  # 413
        httpx.post(url, json={"repo": "x" * (MAX_INPUT + 1)}, headers=served.auth).status_code,  # 422
        httpx.post(url, json={"ref": "main"}, headers=served.auth).status_code,  # 422
    }
    assert observed == {400, 401, 403, 404, 413, 422}
    assert observed <= documented
