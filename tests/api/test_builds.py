"""The native API end to end: create, read, list, resumable event streams, cancel, errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import world
from tests.support.repos import buildable_repo
from tests.support.service import build_url, sse_messages
from tests.support.waiting import wait_until

pytestmark = pytest.mark.docker


def create(service: str, repo: str, ref: str = "main", **headers: str) -> httpx.Response:
    return httpx.post(f"{service}api/v1/builds", json={"repo": repo, "ref": ref}, headers=headers, timeout=30)


def wait_done(service: str, build_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(f"{service}api/v1/builds/{build_id}").json()
        return body if body["status"] in ("ready", "failed", "cancelled") else None

    return wait_until(done, timeout=timeout, interval=0.1, what="the build to finish")


def test_create_read_stream_and_list(service_url: str, git_root: Path, git_daemon_url: str) -> None:
    name, commit = buildable_repo(git_root)
    r = create(service_url, git_daemon_url + name)
    assert r.status_code == 201, r.text
    build = r.json()
    assert build["commit"] == commit
    assert build["status"] in ("queued", "running")
    assert build["image_name"].endswith(":" + commit)
    events = sse_messages(str(httpx.URL(service_url).join(build["events_url"])))
    ids = [e["_id"] for e in events]
    assert ids == list(range(1, len(ids) + 1))  # every event, with its id, in order
    assert [e["id"] for e in events] == ids
    assert events[-1]["phase"] == "ready"
    assert events[-1]["image_name"] == build["image_name"]

    done = httpx.get(f"{service_url}api/v1/builds/{build['id']}").json()
    assert done["status"] == "ready"
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    listed = httpx.get(f"{service_url}api/v1/builds").json()["builds"]
    assert build["id"] in [b["id"] for b in listed]

    # The image exists now: a new request is answered as a finished, cached build (200).
    again = create(service_url, git_daemon_url + name)
    assert again.status_code == 200
    assert again.json()["cached"] is True
    assert again.json()["status"] == "ready"


def test_reconnect_with_last_event_id_misses_nothing(
    service_url: str, git_root: Path, git_daemon_url: str
) -> None:
    name, _ = buildable_repo(git_root, run="echo one && sleep 1 && echo two")
    build = create(service_url, git_daemon_url + name).json()
    url = f"{service_url}api/v1/builds/{build['id']}/events"
    # Read a few events, drop the connection mid-build, then come back with Last-Event-ID.
    seen: list[int] = []
    with httpx.stream("GET", url, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("id:"):
                seen.append(int(line[3:]))
                if len(seen) == 3:
                    break
    rest = sse_messages(url, headers={"Last-Event-ID": str(seen[-1])})
    assert rest[0]["_id"] == seen[-1] + 1
    full = sse_messages(url)
    assert seen + [e["_id"] for e in rest] == [e["_id"] for e in full]
    assert rest[-1]["phase"] == "ready"


def test_disconnect_does_not_stop_the_build(service_url: str, git_root: Path, git_daemon_url: str) -> None:
    name, _ = buildable_repo(git_root, run="sleep 1")
    with httpx.stream("GET", build_url(service_url, git_daemon_url + name), timeout=30) as r:
        next(r.iter_lines())  # one line, then hang up
    builds = httpx.get(f"{service_url}api/v1/builds", params={"limit": 5}).json()["builds"]
    build = next(b for b in builds if b["image_name"].split(":")[-1] and name in b["repo"])
    assert wait_done(service_url, build["id"])["status"] == "ready"


def test_cancel_stops_the_build(service_url: str, git_root: Path, git_daemon_url: str) -> None:
    name, _ = buildable_repo(git_root, run="sleep 60")
    build = create(service_url, git_daemon_url + name).json()
    url = f"{service_url}api/v1/builds/{build['id']}/events"
    with httpx.stream("GET", url, timeout=30) as r:
        for line in r.iter_lines():
            if "sleep 60" in line:
                break
    started = time.monotonic()
    cancelled = httpx.post(f"{service_url}api/v1/builds/{build['id']}/cancel", timeout=30).json()
    # Behaviour, not speed: the answer came before `sleep 60` could end, so the build was stopped.
    assert time.monotonic() - started < 60
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"]["code"] == "build_cancelled"
    events = sse_messages(url)
    assert events[-1]["phase"] == "failed"
    assert events[-1]["code"] == "build_cancelled"
    # cancelling a finished build changes nothing
    assert httpx.post(f"{service_url}api/v1/builds/{build['id']}/cancel").json()["status"] == "cancelled"


def test_queue_tells_waiting_clients_their_position(
    start_service: Callable[..., AbstractContextManager[str]], git_root: Path, git_daemon_url: str
) -> None:
    with start_service(max_concurrent_builds=1) as service:
        first = create(service, git_daemon_url + buildable_repo(git_root, run="sleep 2")[0]).json()
        second = create(service, git_daemon_url + buildable_repo(git_root, run="true")[0]).json()
        events = sse_messages(f"{service}api/v1/builds/{second['id']}/events")
        assert any(e["queue_position"] == 1 for e in events)
        assert events[-1]["phase"] == "ready"
        first_done = wait_done(service, first["id"])
        second_done = httpx.get(f"{service}api/v1/builds/{second['id']}").json()
        # the second only got a slot once the first's repo2docker run (sleep 2) was over
        started = [datetime.fromisoformat(b["started_at"]) for b in (first_done, second_done)]
        assert (started[1] - started[0]).total_seconds() >= 2


def test_build_timeout(
    start_service: Callable[..., AbstractContextManager[str]], git_root: Path, git_daemon_url: str
) -> None:
    with start_service(build_timeout=3) as service:
        build = create(service, git_daemon_url + buildable_repo(git_root, run="sleep 60")[0]).json()
        done = wait_done(service, build["id"], timeout=30)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "build_timeout"


def test_local_engine_without_registry(
    start_service: Callable[..., AbstractContextManager[str]], git_root: Path, git_daemon_url: str
) -> None:
    with start_service(registry_url="", image_prefix="binder-local-test-") as service:
        name, _commit = buildable_repo(git_root)
        build = create(service, git_daemon_url + name).json()
        assert not build["image_name"].startswith("127.0.0.1")
        assert wait_done(service, build["id"])["status"] == "ready"
        assert world.image_exists(build["image_name"])
        health = httpx.get(f"{service}health").json()
        assert [c["service"] for c in health["checks"]] == ["Docker engine", "Local image store"]


def test_registry_down(
    start_service: Callable[..., AbstractContextManager[str]], git_root: Path, git_daemon_url: str
) -> None:
    from tests.support.net import free_port

    with start_service(registry_url=f"http://127.0.0.1:{free_port()}") as service:
        health = httpx.get(f"{service}health")
        assert health.status_code == 503
        checks = {c["service"]: c for c in health.json()["checks"]}
        assert checks["Docker engine"]["ok"] is True
        assert checks["Registry"]["ok"] is False
        r = create(service, git_daemon_url + buildable_repo(git_root)[0])
        assert r.status_code == 503
        assert r.json()["code"] == "registry_unavailable"


def test_engine_down(
    start_service: Callable[..., AbstractContextManager[str]],
    git_root: Path,
    git_daemon_url: str,
    tmp_path: Path,
) -> None:
    with start_service(registry_url="", docker_host=f"unix://{tmp_path}/no.sock") as service:
        health = httpx.get(f"{service}health")
        assert health.status_code == 503
        assert all(not c["ok"] for c in health.json()["checks"])
        r = create(service, git_daemon_url + buildable_repo(git_root)[0])
        assert r.status_code == 503
        assert r.json()["code"] == "engine_unavailable"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"repo": "--upload-pack=touch /tmp/binder-pwned", "ref": "main"}, 403, "repo_not_allowed"),
        # Outside the schema's ref pattern or past its maxLength: the schema's own verdict, 422.
        ({"repo": "https://example.org/x", "ref": "-x"}, 422, "invalid_request"),
        ({"repo": "https://example.org/x", "provider": "nope"}, 404, "unknown_provider"),
        ({"ref": "main"}, 422, "invalid_request"),
        ({"repo": "x" * 5000}, 422, "invalid_request"),  # past max_input_length, as OpenAPI says
        ({"repo": "https://example.org/" + "x" * 3000}, 422, "invalid_request"),
    ],
)
def test_bad_requests_are_json_errors(service_url: str, body: dict[str, str], status: int, code: str) -> None:
    r = httpx.post(f"{service_url}api/v1/builds", json=body)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert r.json()["message"]
    assert "Traceback" not in r.text


def test_unknown_build_and_oversized_body(service_url: str) -> None:
    r = httpx.get(f"{service_url}api/v1/builds/nope")
    assert (r.status_code, r.json()["code"]) == (404, "build_not_found")
    r = httpx.get(f"{service_url}api/v1/builds/nope/events")
    assert (r.status_code, r.json()["code"]) == (404, "build_not_found")
    r = httpx.post(f"{service_url}api/v1/builds", content=b"{" + b" " * 100_000 + b"}")
    assert (r.status_code, r.json()["code"]) == (413, "input_too_large")
    r = httpx.get(f"{service_url}no/such/route")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_meta_endpoints(service_url: str) -> None:
    assert httpx.get(f"{service_url}health").json()["ok"] is True
    versions = httpx.get(f"{service_url}versions").json()
    assert versions["builder_info"]["repo2docker-version"] != "unknown"
    providers = httpx.get(f"{service_url}api/repoproviders").json()
    assert "git" in [p["id"] for p in providers]
    metrics = httpx.get(f"{service_url}metrics")
    assert "binder_builds_started_total" in metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    openapi = httpx.get(f"{service_url}openapi.json").json()
    assert {"/api/v1/builds", "/api/v1/builds/{build_id}/events", "/build/{provider}/{spec}"} <= set(
        openapi["paths"]
    )
    assert httpx.get(f"{service_url}docs").status_code == 200


def test_static_tokens(
    start_service: Callable[..., AbstractContextManager[str]], git_root: Path, git_daemon_url: str
) -> None:
    with start_service(api_tokens="s3cret-token") as service:
        r = create(service, git_daemon_url + "x")
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
        r = create(service, git_daemon_url + "x", Authorization="Bearer wrong")
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
        assert "s3cret" not in r.text
        r = create(service, git_daemon_url + buildable_repo(git_root)[0], Authorization="Bearer s3cret-token")
        assert r.status_code == 201
        assert httpx.get(f"{service}health").status_code == 200  # probes stay open


def test_chunked_oversized_body(service_url: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    r = httpx.post(
        f"{service_url}api/v1/builds", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert (r.status_code, r.json()["code"]) == (413, "input_too_large")


def test_finished_stream_tells_eventsource_to_stop(
    service_url: str, git_root: Path, git_daemon_url: str
) -> None:
    build = create(service_url, git_daemon_url + buildable_repo(git_root)[0]).json()
    events = sse_messages(f"{service_url}api/v1/builds/{build['id']}/events")
    r = httpx.get(
        f"{service_url}api/v1/builds/{build['id']}/events", headers={"Last-Event-ID": str(events[-1]["_id"])}
    )
    assert r.status_code == 204


def test_cached_answers_do_not_crowd_out_real_builds(
    start_service: Callable[..., AbstractContextManager[str]], git_root: Path, git_daemon_url: str
) -> None:
    with start_service(build_history=3) as service:
        name, _ = buildable_repo(git_root)
        built = create(service, git_daemon_url + name).json()
        wait_done(service, built["id"])
        cached = [create(service, git_daemon_url + name).json() for _ in range(10)]
        assert len({c["id"] for c in cached}) == 1  # one record answers them all
        assert httpx.get(f"{service}api/v1/builds/{built['id']}").status_code == 200
        listed = httpx.get(f"{service}api/v1/builds").json()["builds"]
        assert [b["id"] for b in listed] == [built["id"]]
        with_cached = httpx.get(f"{service}api/v1/builds", params={"cached": "true"}).json()["builds"]
        assert [b["id"] for b in with_cached] == [cached[0]["id"], built["id"]]
