"""`binder-service serve` itself, as a subprocess: uvicorn configured exactly as in production
(tests/support/served.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.served import Served, served_in


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_in(tmp_path_factory.mktemp("served")) as service:
        yield service
