"""Three distributions, one direction: the service and the hub side both use the client, neither the other."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = {
    "binder-service": ROOT / "pyproject.toml",
    "binder-service-client": ROOT / "src" / "client" / "pyproject.toml",
    "binder-service-hub": ROOT / "hub_extension" / "pyproject.toml",
}


def _requires(project: str) -> set[str]:
    """The names a project's default install requires (extras left out)."""
    deps = tomllib.loads(PROJECTS[project].read_text())["project"]["dependencies"]
    return {re.split(r"[\s\[<>=!~;@]", d, maxsplit=1)[0].lower() for d in deps}


def test_the_service_requires_the_client_and_nothing_of_the_hub() -> None:
    needs = _requires("binder-service")
    assert "binder-service-client" in needs
    assert not needs & {"binder-service-hub", "jupyterhub", "tornado"}


def test_the_hub_side_requires_the_client_and_nothing_of_the_service() -> None:
    needs = _requires("binder-service-hub")
    assert "binder-service-client" in needs
    assert not needs & {"binder-service", "fastapi", "starlette", "uvicorn"}


def test_the_client_requires_httpx_alone() -> None:
    assert _requires("binder-service-client") == {"httpx"}


def _loaded(code: str, modules: tuple[str, ...]) -> list[str]:
    check = f"import json, sys; {code}; print(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_the_client_loads_with_httpx_alone() -> None:
    # binder-service's CLI, the hub's spawner and the tests import it.
    modules = ("jupyterhub", "tornado", "traitlets", "fastapi", "binder_service", "binder_service_hub")
    assert _loaded("import binder_service_client", modules) == []


def test_the_service_and_its_cli_load_nothing_of_the_hub_side() -> None:
    modules = ("binder_service_hub", "jupyterhub", "tornado")
    assert _loaded("import binder_service.cli, binder_service.app", modules) == []
