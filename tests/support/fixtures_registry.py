"""Session fixtures: the real world (dockerd + registry) and extra registries with Basic and token auth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import world
from tests.support.registry_servers import RegistryServer, start_registry


@pytest.fixture(scope="session")
def world_env() -> dict[str, str]:
    """Start (or reuse) world's dockerd and registry; the environment that points at them."""
    return world.up()


@pytest.fixture(scope="session")
def world_registry(world_env: dict[str, str]) -> RegistryServer:
    """World's anonymous registry (127.0.0.1:5055), shared with the rest of the suite."""
    host = world_env["BINDER_WORLD_REGISTRY"]
    return RegistryServer(url=f"http://{host}", host=host)


@pytest.fixture(scope="session")
def basic_auth_registry(
    world_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """A registry behind htpasswd (Basic) auth, with its own storage."""
    server = start_registry(tmp_path_factory.mktemp("registry-basic"), auth="basic")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_auth_registry(
    world_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """A registry behind Bearer-token auth; ``.token_server`` issues the tokens and counts requests."""
    server = start_registry(tmp_path_factory.mktemp("registry-token"), auth="token")
    yield server
    server.stop()
