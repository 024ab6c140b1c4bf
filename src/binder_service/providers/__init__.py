"""Repository sources. Each provider turns a spec into a ResolvedRepo; `Providers` holds the enabled ones."""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import UnknownProvider
from .base import RepoProvider, RepoSpec, ResolvedRepo

__all__ = ["Providers", "RepoProvider", "RepoSpec", "ResolvedRepo"]


class Providers:
    """The enabled providers by name; the native API asks it which one handles a plain repository."""

    def __init__(self, providers: list[RepoProvider]) -> None:
        self._by_name = {p.name: p for p in providers}

    def get(self, name: str) -> RepoProvider:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownProvider(f"unknown provider {name[:64]!r} (enabled: {known})") from None

    def for_repo(self, repo: str, provider: str | None = None) -> RepoProvider:
        """The provider for a plain repository: the named one, else the first enabled one that claims
        `repo` (a URL on its host: github.com -> `gh`, gitlab.com -> `gl`, ...), else `git`."""
        if provider:
            return self.get(provider)
        for candidate in self._by_name.values():
            if candidate.claims(repo):
                return candidate
        if "git" in self._by_name:
            return self._by_name["git"]
        known = ", ".join(sorted(self._by_name)) or "none"
        raise UnknownProvider(f"no enabled provider handles {repo[:100]!r} (enabled: {known})")

    def __iter__(self) -> Iterator[RepoProvider]:
        return iter(self._by_name.values())
