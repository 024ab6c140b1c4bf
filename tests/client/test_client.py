"""binder_service_client: against the real service, and through dropped and silent connections."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from binder_service_client import BinderServiceError, BuildClient

from tests.support.gitserve import serve_threaded
from tests.support.net import blackhole, free_port
from tests.support.repos import buildable_repo


class Tokens:
    """Hands out a new token per call, as the spawner does, and counts them."""

    def __init__(self, value: str = "s3cret-token") -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.value


async def collect(client: BuildClient, build_id: str) -> list[dict[str, Any]]:
    return [event async for event in client.events(build_id)]


@pytest.mark.docker
async def test_build_against_the_real_service(
    start_service: Callable[..., AbstractContextManager[str]], git_root: Path, git_daemon_url: str
) -> None:
    name, commit = buildable_repo(git_root)
    tokens = Tokens()
    with start_service(api_tokens=[tokens.value]) as url:
        async with BuildClient(url, token=tokens, timeout=10) as client:
            build = await client.create_build(git_daemon_url + name, "main")
            assert build["commit"] == commit
            events = await collect(client, build["id"])
            assert events[-1]["phase"] == "ready"
            assert events[-1]["image_name"] == build["image_name"]
            assert [e["id"] for e in events] == list(range(1, len(events) + 1))
            again = await client.create_build(git_daemon_url + name, "main")
            assert again["status"] == "ready"
        assert tokens.calls == 3  # one token per request

        async with BuildClient(url, token=Tokens("wrong"), timeout=10) as client:
            with pytest.raises(BinderServiceError) as info:
                await client.create_build(git_daemon_url + name, "main")
        assert info.value.code == "unauthorized"
        assert "wrong" not in str(info.value)

        async with BuildClient(url, token=tokens, timeout=10) as client:
            with pytest.raises(BinderServiceError) as info:
                await client.create_build(git_daemon_url + "does-not-exist", "main")
            assert info.value.code in ("repo_not_found", "ref_not_found")
            with pytest.raises(BinderServiceError) as info:
                await collect(client, "no-such-build")
            assert info.value.code == "build_not_found"


class _DroppingSSE(BaseHTTPRequestHandler):
    """Serves events 1-5 of a build; the first connection is cut after event 2."""

    protocol_version = "HTTP/1.1"
    seen_last_ids: list[str | None]
    seen_auth: list[str | None]

    def do_GET(self) -> None:
        self.seen_last_ids.append(self.headers.get("Last-Event-ID"))
        self.seen_auth.append(self.headers.get("Authorization"))
        after = int(self.headers.get("Last-Event-ID") or 0)
        first = len(self.seen_last_ids) == 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(after + 1, 6):
            phase = "ready" if i == 5 else "building"
            data = json.dumps({"id": i, "phase": phase, "message": f"line {i}", "image_name": "img:1"})
            self._chunk(f"id: {i}\r\ndata: {data}\r\n\r\n".encode())
            if first and i == 2:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-build
                self.close_connection = True
                return
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def dropping_server() -> Iterator[tuple[str, type[_DroppingSSE]]]:
    handler = type("Handler", (_DroppingSSE,), {"seen_last_ids": [], "seen_auth": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    with serve_threaded(server) as url:
        yield url, handler


async def test_events_resume_after_a_dropped_connection() -> None:
    tokens = Tokens()
    with dropping_server() as (url, handler):
        async with BuildClient(url, token=tokens, timeout=5) as client:
            events = await collect(client, "b1")
    assert [e["id"] for e in events] == [1, 2, 3, 4, 5]  # each exactly once
    assert handler.seen_last_ids == ["0", "2"]  # the second connection asked for what it missed
    assert handler.seen_auth == ["Bearer s3cret-token"] * 2
    assert tokens.calls == 2  # a fresh token for the reconnect


async def test_unreachable_service_is_a_clear_error() -> None:
    async with BuildClient(f"http://127.0.0.1:{free_port()}/", timeout=2) as client:
        with pytest.raises(BinderServiceError) as info:
            await client.create_build("org/repo", "main")
    assert info.value.code == "unreachable"


async def test_silent_service_times_out() -> None:
    with blackhole() as (host, port):
        async with BuildClient(
            f"http://{host}:{port}/", timeout=0.5, read_timeout=0.5, reconnects=1
        ) as client:
            with pytest.raises(BinderServiceError) as info:
                await client.create_build("org/repo", "main")
            assert info.value.code == "unreachable"
            with pytest.raises(BinderServiceError) as info:
                await collect(client, "b1")
            assert info.value.code == "stream_lost"


class _Scripted(BaseHTTPRequestHandler):
    """Answers the n-th GET with the n-th (status, body) of `script`; records each Last-Event-ID."""

    protocol_version = "HTTP/1.1"
    script: list[tuple[int, bytes]]
    seen_last_ids: list[str | None]

    def do_GET(self) -> None:
        self.seen_last_ids.append(self.headers.get("Last-Event-ID"))
        status, body = self.script[min(len(self.seen_last_ids), len(self.script)) - 1]
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream" if status == 200 else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def scripted(*script: tuple[int, bytes]) -> Iterator[tuple[str, type[_Scripted]]]:
    handler = type("Handler", (_Scripted,), {"script": list(script), "seen_last_ids": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    with serve_threaded(server) as url:
        yield url, handler


def sse(*events: dict[str, Any], ids: bool = True, keepalive: bool = False) -> bytes:
    out = b":keepalive\n\n" if keepalive else b""
    for i, event in enumerate(events, 1):
        out += (f"id: {i}\n" if ids else "").encode() + f"data: {json.dumps(event)}\n\n".encode()
    return out


async def test_keepalives_are_skipped_and_the_sse_id_fills_a_missing_id() -> None:
    body = sse({"phase": "building", "message": "x"}, {"phase": "ready", "image_name": "i:1"}, keepalive=True)
    with scripted((200, body)) as (url, _):
        async with BuildClient(url, timeout=5) as client:
            events = await collect(client, "b1")
    assert [(e["id"], e["phase"]) for e in events] == [(1, "building"), (2, "ready")]


async def test_a_finished_build_with_nothing_new_is_204_and_ends_the_stream() -> None:
    with scripted((204, b"")) as (url, handler):
        async with BuildClient(url, timeout=5) as client:
            assert [e async for e in client.events("b1", after=12)] == []
    assert handler.seen_last_ids == ["12"]


async def test_an_unreadable_event_is_a_clear_error() -> None:
    with scripted((200, b"id: 1\ndata: {not json\n\n")) as (url, _):
        async with BuildClient(url, timeout=5) as client:
            with pytest.raises(BinderServiceError) as info:
                await collect(client, "b1")
    assert info.value.code == "bad_response"


async def test_events_without_any_id_reconnect_from_the_last_known_one() -> None:
    # No `id:` and no "id": the stream ends early, the reconnect asks from where it was (0), once more.
    first = sse({"phase": "building", "message": "x"}, ids=False) + b'data: ["not an event"]\n\n'
    with scripted((200, first), (200, sse({"phase": "ready"}, ids=False))) as (url, handler):
        async with BuildClient(url, timeout=5) as client:
            events = await collect(client, "b1")
    assert [e["phase"] for e in events] == ["building", "ready"]
    assert "id" not in events[0]
    assert handler.seen_last_ids == ["0", "0"]


async def test_an_error_answer_is_the_service_code() -> None:
    body = json.dumps({"code": "build_not_found", "message": "no build b1"}).encode()
    with scripted((404, body)) as (url, _):
        async with BuildClient(url, timeout=5) as client:
            with pytest.raises(BinderServiceError) as info:
                await collect(client, "b1")
    assert (info.value.code, info.value.message) == ("build_not_found", "no build b1")
