"""The JupyterHub test world: one hub (+ proxy, binder-service, DockerSpawner) per session; repositories."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import world
from tests.support.gitserve import make_repo
from tests.support.hub import Hub, running_hub
from tests.support.records import MakeRepo

RUN_ID = uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def hub_world_env(world_env: dict[str, str]) -> dict[str, str]:
    """The world plus the single-user image servers start from (built once per machine, then cached)."""
    world.ensure_singleuser_image()
    return world_env


@pytest.fixture(scope="session")
def hub(hub_world_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(
        tmp_path_factory.mktemp("hub"),
        world_env=hub_world_env,
        image_prefix=f"hubtest-{RUN_ID}/",
        container_prefix=f"hubtest-{RUN_ID}",
    ) as h:
        yield h


@pytest.fixture
def make_hub_repo(git_root: Path, git_daemon_url: str) -> MakeRepo:
    """A repository (served by the session's git daemon) whose image runs as a JupyterHub server.

    Returns (git URL, marker): the marker is a unique text in `marker.txt` in the server's home.
    `run` adds a RUN step; `fail=True` adds one that fails (exit code 3).
    """

    def make(*, run: str = "", fail: bool = False) -> tuple[str, str]:
        name = f"hubrepo-{uuid.uuid4().hex[:8]}"
        # Not hex of a token's length: the secrets test looks for anything shaped like a hub token.
        marker = f"binder-marker-{secrets.token_urlsafe(12)}"
        dockerfile = (
            f"FROM {world.SINGLEUSER_IMAGE}\n"
            "ARG NB_USER\n"
            "ARG NB_UID\n"
            "COPY --chown=1000:1000 marker.txt /home/jovyan/marker.txt\n"
        )
        if run:
            dockerfile += f"RUN {run}\n"
        if fail:
            dockerfile += f'RUN echo "cannot build {name}" && exit 3\n'
        make_repo(git_root, name, {"Dockerfile": dockerfile, "marker.txt": marker + "\n"})
        return f"{git_daemon_url}{name}", marker

    return make


@pytest.fixture
def username() -> str:
    return f"u{uuid.uuid4().hex[:8]}"
