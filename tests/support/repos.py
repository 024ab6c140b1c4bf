"""Test repositories that repo2docker can build here: a Dockerfile FROM the locally made busybox image."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import world

from .gitserve import make_repo


def dockerfile(run: str = "echo hello > /hello.txt") -> str:
    return f"FROM {world.BUSYBOX_IMAGE}\nARG NB_USER\nARG NB_UID\nRUN {run}\n"


def buildable_repo(
    root: Path, *, run: str = "echo hello > /hello.txt", prefix: str = "repo"
) -> tuple[str, str]:
    """A new repository under `root` (served by the session's git servers); returns (name, commit)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    # A unique file: every repository gets its own commit, so no test finds another's image.
    # The name in the RUN step too: the engine's layer cache must not turn a "slow" step into a cache hit.
    commit = make_repo(root, name, {"Dockerfile": dockerfile(f"{run} && echo {name}"), "id.txt": name})
    return name, commit


def counting_repo2docker(tmp_path: Path) -> tuple[Path, Path]:
    """A repo2docker that notes each run in a file, then is the real one: (the wrapper, the runs file).
    `runs.read_text().count("run")` is how many builds really ran."""
    runs = tmp_path / "repo2docker-runs"
    wrapper = tmp_path / "repo2docker"
    real = Path(sys.executable).parent / "repo2docker"
    wrapper.write_text(f'#!/bin/sh\necho run >> {runs}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, runs
