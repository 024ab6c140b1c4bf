"""What the dataset providers share: a record has no refs, lookups are cached, dates become versions.

A dataset (a Zenodo record, a Figshare article, ...) is named by a DOI or a URL. Its "commit" is the
version the record is at (a record id, `v3`, `v1.2`, a modification time) and its build slug names the
record across versions, so images of one record share a name and differ in tag.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import ClassVar, TypedDict, TypeVar, cast
from urllib.parse import unquote

from ..caching import LookupCache
from ..errors import BinderError, InvalidSpec, RefNotFound, RepoNotFound, UpstreamError
from .base import RepoProvider, RepoSpec
from .http_api import Reply

__all__ = ["LATEST", "DatasetOptions", "DatasetProvider", "epoch_version"]

# What the native API sends when no ref is given, and what BinderHub's forms send for a dataset.
LATEST = frozenset({"HEAD", "latest", ""})

V = TypeVar("V")


class DatasetOptions(TypedDict):
    """The keyword arguments every dataset provider takes, as app.py passes them on."""

    max_input_length: int
    ref_cache_ttl: float
    not_found_ttl: float


def epoch_version(value: object, *, api: str, field: str) -> str:
    """An ISO 8601 date (UTC when it names no zone) -> `v<epoch seconds>`, BinderHub's dataset version."""
    if not isinstance(value, str):
        raise UpstreamError(f"{api} answered without a valid {field!r}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as e:
        raise UpstreamError(f"{api} answered with an unreadable {field!r}: {value[:60]!r}") from e
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"v{int(moment.timestamp())}"


def json_object(reply: Reply) -> dict[str, object]:
    """The body as a JSON object; UpstreamError for anything else."""
    data = reply.json()
    if not isinstance(data, dict):
        raise UpstreamError(f"{reply.api} answered with JSON that is not an object")
    return data


class DatasetProvider(RepoProvider):
    """A provider of archived records: one spec names one record; a ref can only mean "as named"."""

    ref_label = "Not used: the DOI or URL names the version"
    remembered: ClassVar[tuple[type[BinderError], ...]] = (RepoNotFound, RefNotFound)

    def __init__(
        self,
        *,
        max_input_length: int,
        ref_cache_ttl: float = 0.0,
        not_found_ttl: float = 30.0,
        max_cached: int = 4096,
    ) -> None:
        super().__init__(max_input_length=max_input_length)
        self._cache: LookupCache[str, object] = LookupCache(
            ttl=ref_cache_ttl, error_ttl=not_found_ttl, remember=self.remembered, max_size=max_cached
        )

    def parse_spec(self, spec: str) -> RepoSpec:
        """BinderHub's spec is the DOI or URL itself (URL-escaped or not); there is no ref."""
        self._check_length("spec", spec)
        return self.from_repo(unquote(spec), "HEAD")

    def from_repo(self, repo: str, ref: str) -> RepoSpec:
        self._check_length("repository", repo)
        if len(ref) > self.max_input_length:
            self._check_length("ref", ref)
        if ref not in LATEST:
            raise InvalidSpec(
                f"a {self.display_name} has no refs (got {ref[:60]!r}): name the version in the DOI or URL"
            )
        return RepoSpec(provider=self.name, repo=self.canonical(repo.strip()), ref="HEAD")

    @abstractmethod
    def canonical(self, repo: str) -> str:
        """`repo` in the form `resolve` reads; InvalidSpec when it is not one of this provider's."""

    async def cached(self, key: str, compute: Callable[[], Awaitable[V]]) -> V:
        """Single-flight `compute()`; "not found" answers remembered for a short while."""
        return cast(V, await self._cache.get_or_compute(key, compute))
