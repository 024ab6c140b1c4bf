"""Session fixtures: the base image in the loopback registry, a second, empty Docker engine, the
unprivileged build user of rootless buildah builds, and a virtualenv that user can run the service from."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engines import fresh_engine, push_base_image
from tests.support.unprivileged_venv import unprivileged_venv


@pytest.fixture(scope="session")
def registry_base_image(world_env: dict[str, str]) -> str:
    """The world's busybox base image, pulled by name from the world's registry."""
    return push_base_image(world_env["BINDER_WORLD_REGISTRY"])


@pytest.fixture(scope="session")
def fresh_engine_host(world_env: dict[str, str]) -> Iterator[str]:
    """DOCKER_HOST of an engine of its own that starts empty (its data root is removed afterwards)."""
    # Not under pytest's basetemp: the socket path must stay short (unix sockets: 107 bytes).
    root = Path(f"/tmp/bsw-fresh-{os.getpid()}")
    root.mkdir(exist_ok=True)
    with fresh_engine(root) as host:
        yield host
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def build_user() -> str:
    """A rootless build user, made as the quick-start makes it (scripts/install-system.sh --build-user)."""
    name = "bsbuild"
    subprocess.run(["scripts/install-system.sh", "--build-user", name], check=True, capture_output=True)
    return name


@pytest.fixture(scope="session")
def unprivileged_python() -> Path:
    """A virtualenv of this tree any user can run (tests/support/unprivileged_venv.py); its directory."""
    return unprivileged_venv()
