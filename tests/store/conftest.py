"""Build store fixtures: a real PostgreSQL cluster per session; a store on SQLite or PostgreSQL per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from binder_service.store import BuildStore
from tests.support.postgres import Cluster, postgres_cluster


@pytest.fixture(scope="session")
def pg() -> Iterator[Cluster]:
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of the test's own: a SQLite file, or a fresh database in the session cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    cluster: Cluster = request.getfixturevalue("pg")
    return cluster.create_database()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[BuildStore]:
    opened = await BuildStore.open(db_url, op_timeout=5.0)
    yield opened
    await opened.aclose()
