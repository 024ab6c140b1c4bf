"""Session fixtures of the chart tests."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest

from tests.support.chart import vendor_umbrella


@pytest.fixture(scope="session", autouse=True)
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads (large) schema files on every call; read each once."""
    with pytest.MonkeyPatch.context() as mp:
        cached = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
        mp.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield


@pytest.fixture(scope="session")
def umbrella(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vendor_umbrella(tmp_path_factory.mktemp("umbrella"))
