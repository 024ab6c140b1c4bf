"""pytest fixtures: one git daemon and one smart-HTTP server per session, both serving `git_root`.

Tests create repositories with `gitserve.make_repo(git_root, <unique name>, ...)`; both servers see
them at once, as `<git_daemon_url><name>` and `<git_http_url><name>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .gitserve import serve_git_daemon, serve_git_http


@pytest.fixture(scope="session")
def git_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory both git servers export; every repository directly under it is served."""
    return tmp_path_factory.mktemp("git-repos")


@pytest.fixture(scope="session")
def git_daemon_url(git_root: Path) -> Iterator[str]:
    """ "git://127.0.0.1:PORT/" of a `git daemon` exporting `git_root`."""
    with serve_git_daemon(git_root) as url:
        yield url


@pytest.fixture(scope="session")
def git_http_url(git_root: Path) -> Iterator[str]:
    """ "http://127.0.0.1:PORT/" of a smart-HTTP server (`git http-backend`) exporting `git_root`."""
    with serve_git_http(git_root) as url:
        yield url
