"""Session fixtures of the chart tests."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest

from .support import CHART, STANDIN_JUPYTERHUB, UMBRELLA


@pytest.fixture(scope="session", autouse=True)
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads (large) schema files on every call; read each once."""
    with pytest.MonkeyPatch.context() as mp:
        cached = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
        mp.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield


def vendor_umbrella(dest: Path, standin: Path = STANDIN_JUPYTERHUB) -> Path:
    """The example umbrella chart with its dependencies vendored as `helm dependency build` would: this
    chart, and a stand-in for the jupyterhub chart (it cannot be downloaded here)."""
    path = dest / "z2jh-umbrella"
    shutil.copytree(UMBRELLA, path)
    shutil.copytree(CHART, path / "charts" / "binder-service", ignore=shutil.ignore_patterns("examples"))
    shutil.copytree(standin, path / "charts" / "jupyterhub")
    return path


@pytest.fixture(scope="session")
def umbrella(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vendor_umbrella(tmp_path_factory.mktemp("umbrella"))
