"""Plain values the unit tests of builds and of the build store share (no test imports another's)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from binder_service.providers import ResolvedRepo
from binder_service.store import BuildRecord

# A resolved repository for builds that never reach git.
REPO = ResolvedRepo(provider="git", repo_url="git://h/r", ref="main", commit="a" * 40, build_slug="git://h/r")

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# make_hub_repo's type: (run=..., fail=...) -> (git URL, marker).
MakeRepo = Callable[..., tuple[str, str]]


def record(build_id: str, **changes: object) -> BuildRecord:
    """A running build of a git repository, asked for by alice at T0, with `changes` applied."""
    values: dict[str, object] = {
        "id": build_id,
        "image": f"reg/img-{build_id}:c0ffee",
        "provider": "git",
        "repository": "https://example.org/repo.git",
        "build_slug": "example.org-repo",
        "ref": "main",
        "commit": "c0ffee" * 6,
        "status": "running",
        "created_at": T0,
        "requesters": ("alice",),
    }
    values.update(changes)
    return BuildRecord(**values)  # type: ignore[arg-type]
