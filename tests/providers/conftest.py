"""Fixtures for the API providers: local fakes of GitHub and GitLab (`http` is in fixtures_http)."""

from __future__ import annotations

from collections.abc import Iterator

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
