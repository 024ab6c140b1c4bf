"""The one `http` fixture: an httpx client like app.py's shared one, recording what it sends."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

# Loading the CA bundle costs ~50 ms per client; the fakes are plain HTTP, so share one context.
_TLS = ssl.create_default_context()


class Recorder:
    """Every request an httpx client sends, as ``METHOD path``."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.sent.append(f"{request.method} {request.url.path}")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def http(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    """No redirects followed unless a call asks (as the service's client); requests go to `recorder`."""
    async with httpx.AsyncClient(
        follow_redirects=False, verify=_TLS, event_hooks={"request": [recorder]}
    ) as client:
        yield client
