"""Services under test, each a real app on real uvicorn against the real world (dockerd, registry, git)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from binder_service.settings import Settings
from tests.support.service import running_service

RUN_ID = uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def make_settings(world_env: dict[str, str]) -> Callable[..., Settings]:
    """Settings pointing at the world; each test's service gets its own image prefix."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "registry_url": f"http://{world_env['BINDER_WORLD_REGISTRY']}",
            "image_prefix": f"test-{RUN_ID}-{uuid.uuid4().hex[:4]}/",
            "docker_host": world_env["DOCKER_HOST"],
            "resolve_timeout": 2.0,
            "registry_timeout": 2.0,
            "docker_timeout": 2.0,
            "keepalive_interval": 0.5,
            "build_timeout": 120.0,
            "max_concurrent_builds": 2,
            "allow_private_networks": True,  # the world's git servers and fakes are on loopback
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def service_url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """One shared service pushing to the world's registry."""
    with running_service(make_settings()) as url:
        yield url


@pytest.fixture
def start_service(make_settings: Callable[..., Settings]) -> Callable[..., AbstractContextManager[str]]:
    """A service of a test's own, for settings the shared one does not have."""

    def start(**overrides: Any) -> AbstractContextManager[str]:
        return running_service(make_settings(**overrides))

    return start
