"""The one Docker engine client: the image store and the disk budget reach an engine through it, so an
engine that is down, silent or answering nonsense is the same error, naming it, for both."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from binder_service.errors import EngineUnavailable, UpstreamTimeout
from binder_service.images.engine.client import EngineClient
from binder_service.images.engine.disk import EngineDisk
from binder_service.images.store import EngineImageStore
from tests.support.gitserve import serve_threaded
from tests.support.net import Blackhole, free_port


def _calls(store: EngineImageStore, disk: EngineDisk) -> list[Callable[[], Awaitable[object]]]:
    """Every way the service asks an engine something."""
    return [lambda: store.exists("busybox:1"), store.check, disk.usage, disk.enforce]


@pytest.mark.parametrize("docker_host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:{port}"])
async def test_an_engine_that_is_down_is_one_error_for_every_user(docker_host: str) -> None:
    docker_host = docker_host.format(port=free_port())
    store, disk = EngineImageStore(docker_host, timeout=5), EngineDisk(docker_host, budget=1, timeout=5)
    try:
        for call in _calls(store, disk):
            with pytest.raises(
                EngineUnavailable, match=f"^Docker engine at {re.escape(docker_host)} is not reachable$"
            ):
                await call()
    finally:
        await store.aclose()
        await disk.aclose()


async def test_an_engine_that_never_answers_is_a_timeout_for_every_user() -> None:
    with Blackhole() as hole:
        host = f"tcp://127.0.0.1:{hole.port}"
        store, disk = EngineImageStore(host, timeout=0.2), EngineDisk(host, budget=1, timeout=0.2)
        try:
            for call in _calls(store, disk):
                with pytest.raises(
                    UpstreamTimeout, match=f"^Docker engine at {host} did not answer within 0.2s$"
                ):
                    await call()
        finally:
            await store.aclose()
            await disk.aclose()


class _Broken(BaseHTTPRequestHandler):
    """An engine that answers every request with HTTP 500."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def broken_engine() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    server.daemon_threads = True
    with serve_threaded(server) as url:
        yield url.replace("http://", "tcp://").rstrip("/")


async def test_an_answer_the_caller_cannot_use_names_the_engine_and_the_status(broken_engine: str) -> None:
    store, disk = EngineImageStore(broken_engine, timeout=5), EngineDisk(broken_engine, budget=1, timeout=5)
    try:
        for call, doing in (
            (lambda: store.exists("busybox:1"), ""),
            (store.check, ""),
            (disk.usage, " to df"),
        ):
            with pytest.raises(
                EngineUnavailable, match=f"^Docker engine at {broken_engine} answered HTTP 500{doing}$"
            ):
                await call()
    finally:
        await store.aclose()
        await disk.aclose()


@pytest.mark.parametrize("docker_host", ["", "npipe:////./pipe/docker", "unix://", "tcp://"])
def test_docker_host_is_validated_once_for_every_user(docker_host: str) -> None:
    for make in (
        lambda: EngineClient(docker_host, timeout=1),
        lambda: EngineImageStore(docker_host, timeout=1),
        lambda: EngineDisk(docker_host, budget=1),
    ):
        with pytest.raises(ValueError, match="DOCKER_HOST must be"):
            make()
