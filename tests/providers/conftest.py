"""Fixtures for the API providers: local fakes of GitHub and GitLab, and the shared httpx client."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support.fake_apis import FakeGitHub, FakeGitLab


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def fake_gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as fake:
        yield fake


# Loading the CA bundle costs ~50 ms per client; the fakes are plain HTTP, so share one context.
_TLS = ssl.create_default_context()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """Like app.py's shared client: no redirects followed unless a call asks."""
    async with httpx.AsyncClient(follow_redirects=False, verify=_TLS) as client:
        yield client
