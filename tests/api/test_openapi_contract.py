"""The OpenAPI document against the routes' real answers, as a generated client would meet them.

For every operation, each status these requests provoke must be documented for that operation, come in a
media type the document names for it, and carry a body its schema accepts. Against `binder-service serve`
itself (tests/support/served.py: tokens, a base URL, no Docker engine), and for 502 a second one that may
reach loopback (a closed port: the repository is unreachable).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]  # no stubs; kubernetes-validate's dependency
import pytest

from tests.support.serve_process import serve_process
from tests.support.served import MAX_INPUT, Served

BASE = "/services/binder"
IMAGE = "127.0.0.1:5055/binder/git-example-4fc4767166:1a2b3c4d5e6f"
JSON = {"Content-Type": "application/json"}
SSE = {"Accept": "text/event-stream"}
BAD_URL = "http%3A%2F%2F%5Bzz%5D%2Fx"  # refused before anything is reached: a `failed` event


@dataclass(frozen=True)
class Case:
    method: str
    template: str  # the document's path, without the base URL
    path: str  # what is sent, relative to the base URL
    status: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    token: bool = True


CASES = [
    # The BinderHub face: refusals are `failed` events for event-stream clients, JSON for the others.
    Case(
        "get", "/build/{provider}/{spec}", f"build/git/{BAD_URL}/main?build_only=true", 200, {"headers": SSE}
    ),
    Case("get", "/build/{provider}/{spec}", f"build/git/{BAD_URL}/main?build_only=true", 401, token=False),
    # Create: each refusal the service makes before reaching anything outside.
    Case("post", "/api/v1/builds", "api/v1/builds", 400, {"json": {"repo": "http://[zz]/x"}}),
    Case("post", "/api/v1/builds", "api/v1/builds", 401, {"json": {"repo": "x"}}, token=False),
    Case("post", "/api/v1/builds", "api/v1/builds", 403, {"json": {"repo": "ext::x"}}),
    Case("post", "/api/v1/builds", "api/v1/builds", 404, {"json": {"repo": "x", "provider": "nope"}}),
    Case(
        "post",
        "/api/v1/builds",
        "api/v1/builds",
        413,
        {"content": b"{" + b" " * 70_000 + b"}", "headers": JSON},
    ),
    Case("post", "/api/v1/builds", "api/v1/builds", 422, {"json": {"ref": "main"}}),
    # Past the schema's maxLength, or outside the ref's pattern: the schema's own verdict, 422.
    Case(
        "post",
        "/api/v1/builds",
        "api/v1/builds",
        422,
        {"json": {"repo": "ext::x", "ref": "a" * (MAX_INPUT + 1)}},
    ),
    Case("post", "/api/v1/builds", "api/v1/builds", 422, {"json": {"repo": "x" * (MAX_INPUT + 1)}}),
    Case("post", "/api/v1/builds", "api/v1/builds", 422, {"json": {"repo": "ext::x", "ref": "-x"}}),
    Case("post", "/api/v1/builds", "api/v1/builds", 422, {"json": {"repo": "ext::x", "ref": "a..b"}}),
    # Reading builds.
    Case("get", "/api/v1/builds", "api/v1/builds", 200),
    Case("get", "/api/v1/builds", "api/v1/builds", 401, token=False),
    Case("get", "/api/v1/builds", "api/v1/builds?limit=0", 422),
    Case("get", "/api/v1/builds/{build_id}", "api/v1/builds/nope", 404),
    Case("get", "/api/v1/builds/{build_id}", "api/v1/builds/nope", 401, token=False),
    Case("post", "/api/v1/builds/{build_id}/cancel", "api/v1/builds/nope/cancel", 404),
    Case("get", "/api/v1/builds/{build_id}/events", "api/v1/builds/nope/events", 404),
    Case("get", "/api/v1/builds/{build_id}/events", "api/v1/builds/nope/events?after=-1", 422),
    Case("get", "/api/v1/builds/{build_id}/log", "api/v1/builds/nope/log", 404),
    Case("get", "/api/v1/builds/{build_id}/log", "api/v1/builds/nope/log", 401, token=False),
    # Images.
    Case("get", "/api/v1/images", "api/v1/images", 200),
    Case("get", "/api/v1/images", "api/v1/images?limit=0", 422),
    Case("delete", "/api/v1/images/{image}", f"api/v1/images/{IMAGE}", 404),
    Case("delete", "/api/v1/images/{image}", f"api/v1/images/{IMAGE}", 401, token=False),
    Case("delete", "/api/v1/images/{image}", "api/v1/images/no-tag", 422),
    # The service's own.
    Case("get", "/versions", "versions", 200),
    Case("get", "/health", "health", 503),  # no Docker engine here
    Case("get", "/metrics", "metrics", 200),
    Case("get", "/api/repoproviders", "api/repoproviders", 200),
]


@pytest.fixture(scope="module")
def document(served: Served) -> dict[str, Any]:
    r = httpx.get(served.url + "openapi.json", timeout=30)
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def holds(
    document: dict[str, Any], method: str, template: str, response: httpx.Response, base: str = BASE
) -> None:
    """The answer is what the document says this operation may answer, in a type and shape it names."""
    operation = document["paths"][base + template][method]
    documented = operation["responses"]
    status = str(response.status_code)
    assert status in documented, (
        f"{method.upper()} {template}: {status} not documented ({sorted(documented)})"
    )
    content = documented[status].get("content", {})
    got = response.headers.get("content-type", "").split(";")[0].strip()
    types = {t.split(";")[0].strip(): media for t, media in content.items()}
    if not types:
        assert response.content == b"", (
            f"{method.upper()} {template} {status}: a body where none is documented"
        )
        return
    assert got in types, f"{method.upper()} {template} {status}: {got!r}, documented {sorted(types)}"
    schema = types[got].get("schema")
    if got == "application/json" and schema is not None:
        # The whole document as the root, so the schema's $refs resolve to its components.
        jsonschema.validate(response.json(), {**document, **schema})


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method}-{c.template}-{c.status}")
def test_each_answer_is_documented_as_it_comes(served: Served, document: dict[str, Any], case: Case) -> None:
    headers = {**(served.auth if case.token else {}), **case.kwargs.get("headers", {})}
    kwargs = {k: v for k, v in case.kwargs.items() if k != "headers"}
    r = httpx.request(case.method, served.url + case.path, headers=headers, timeout=30, **kwargs)
    assert r.status_code == case.status, r.text[:500]
    holds(document, case.method, case.template, r)


def test_every_operation_is_exercised(document: dict[str, Any]) -> None:
    """A new route gets its cases here, so the document cannot drift from it unseen."""
    operations = {(m, p.removeprefix(BASE)) for p, ops in document["paths"].items() for m in ops}
    assert operations == {(c.method, c.template) for c in CASES}


def test_error_bodies_are_documented_as_json_everywhere(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and not path.endswith("/health"):
                    assert response["content"] == {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    }, (method, path, status)
                    assert response["description"], (method, path, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_schema_states_the_limits_and_rules_the_service_applies(document: dict[str, Any]) -> None:
    ref = document["components"]["schemas"]["BuildCreate"]["properties"]["ref"]
    assert ref["maxLength"] == MAX_INPUT
    assert ref["pattern"].startswith("^")
    image = next(
        p
        for p in document["paths"][f"{BASE}/api/v1/images/{{image}}"]["delete"]["parameters"]
        if p["name"] == "image"
    )
    # A generator can make an example from it: the documented one matches.
    assert jsonschema.Draft202012Validator(image["schema"]).is_valid(image["schema"]["examples"][0])


@pytest.fixture(scope="module")
def open_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service that may reach loopback repositories (and asks for no token)."""
    work: Path = tmp_path_factory.mktemp("contract")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_SERVICE_", "JUPYTERHUB_"))}
    env |= {
        "BINDER_SERVICE_HOST": "127.0.0.1",
        "BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS": "true",
        "BINDER_SERVICE_DOCKER_HOST": f"unix://{work}/no-engine.sock",
        "BINDER_SERVICE_STATE_DIR": str(work / "state"),
    }
    with serve_process(env, work / "serve.log") as (_, url):
        yield url


def test_an_unreachable_repository_is_the_documented_502(open_service: str) -> None:
    document = httpx.get(open_service + "openapi.json", timeout=30).json()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = closed.getsockname()[1]
        r = httpx.post(
            open_service + "api/v1/builds",
            json={"repo": f"git://127.0.0.1:{port}/x", "ref": "main"},
            timeout=60,
        )
    assert (r.status_code, r.json()["code"]) == (502, "repo_unreachable"), r.text
    holds(document, "post", "/api/v1/builds", r, base="")
    assert "repo_unreachable" in json.dumps(document["paths"]["/api/v1/builds"]["post"]["responses"]["502"])
