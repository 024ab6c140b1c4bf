"""What the providers on a web host with a REST API share: the host's URLs, its API, cached lookups."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from ..caching import LookupCache
from ..errors import BinderError, RefNotFound, RepoNotFound
from .base import RepoProvider
from .detect import host_of, url_path
from .http_api import HttpApi

K = TypeVar("K")
V = TypeVar("V")


class HostedProvider(RepoProvider, Generic[K, V]):
    """A provider resolving through `api`, claiming URLs under `web_url`; lookups single-flight and cached."""

    default_web_url: ClassVar[str]
    # Answers remembered for `not_found_ttl`: a broken link keeps asking about the same missing thing.
    remembered: ClassVar[tuple[type[BinderError], ...]] = (RepoNotFound, RefNotFound)

    def __init__(
        self,
        api: HttpApi,
        *,
        web_url: str | None = None,
        max_input_length: int,
        ref_cache_ttl: float = 0.0,
        not_found_ttl: float = 30.0,
        max_cached: int = 4096,
    ) -> None:
        super().__init__(max_input_length=max_input_length)
        self._api = api
        self._web_url = (web_url or self.default_web_url).rstrip("/")
        self._host = host_of(self._web_url)
        self._max_cached = max_cached
        self._lookups: LookupCache[K, V] = LookupCache(
            ttl=ref_cache_ttl, error_ttl=not_found_ttl, remember=self.remembered, max_size=max_cached
        )

    def claims(self, repo: str) -> bool:
        return url_path(repo, self._web_url) is not None
