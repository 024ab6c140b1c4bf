"""What the dataset providers share: a record has no refs, lookups are cached, dates become versions.

A dataset (a Zenodo record, a Figshare article, ...) is named by a DOI or a URL. Its "commit" is the
version the record is at (a record id, `v3`, `v1.2`, a modification time) and its build slug names the
record across versions, so images of one record share a name and differ in tag.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Generic, NotRequired, TypedDict, TypeVar, Unpack, cast
from urllib.parse import SplitResult, unquote, urlsplit

from ..caching import LookupCache
from ..errors import BinderError, InvalidSpec, RefNotFound, RepoNotFound, UpstreamError
from .base import RepoProvider, RepoSpec, ResolvedRepo
from .doi import DoiResolver, doi_prefix, parse_doi
from .http_api import HttpApi, Reply

__all__ = [
    "LATEST",
    "DatasetOptions",
    "DatasetProvider",
    "DoiDatasetProvider",
    "Pinned",
    "SiteDatasetProvider",
    "epoch_version",
]

# What the native API sends when no ref is given, and what BinderHub's forms send for a dataset.
LATEST = frozenset({"HEAD", "latest", ""})

V = TypeVar("V")
U = TypeVar("U")  # what a provider reads from one of its record URLs


class DatasetOptions(TypedDict):
    """The keyword arguments every dataset provider takes, as app.py passes them on."""

    max_input_length: int
    ref_cache_ttl: NotRequired[float]
    not_found_ttl: NotRequired[float]


@dataclass(frozen=True, slots=True)
class Pinned:
    """A record at one version: the parts of a ResolvedRepo that the host decides."""

    repo_url: str  # what repo2docker fetches: exactly the version resolved
    commit: str  # the version
    build_slug: str  # the record across versions


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
    """A provider of archived records: one spec names one record; a ref can only mean "as named".

    Subclasses say how a repo is written (`canonical`) and how it is pinned (`_pin`); resolving, with
    its cache, is the same for all.
    """

    ref_label = "Not used: the DOI or URL names the version"
    content_provider: ClassVar[str]  # repo2docker's content provider for the pinned `repo_url`
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

    async def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        pinned = await self.cached(self._cache_key(spec.repo), lambda: self._pin(spec.repo))
        return ResolvedRepo(
            provider=self.name,
            repo_url=pinned.repo_url,
            ref=spec.ref,
            commit=pinned.commit,
            build_slug=pinned.build_slug,
            content_provider=self.content_provider,
        )

    def _cache_key(self, repo: str) -> str:
        """What lookups of the canonical `repo` are cached under; DOIs and hosts ignore case."""
        return repo.lower()

    @abstractmethod
    async def _pin(self, repo: str) -> Pinned:
        """Look the canonical `repo` up on its host (RepoNotFound, RefNotFound, UpstreamError)."""


class DoiDatasetProvider(DatasetProvider, Generic[U]):
    """Records named by a DOI (with one of `doi_prefixes`) or by a record URL on the provider's host.

    A DOI is kept as the canonical repo and followed to a record URL (`_from_doi`) when resolving; a
    record URL is read by `_parse_url` and written back by `_record_url`.
    """

    host_name: ClassVar[str]  # as messages name the host: "Zenodo"
    url_what: ClassVar[str]  # what an unreadable URL is not: "a record URL on a configured Zenodo site"

    def __init__(
        self, resolver: DoiResolver, *, doi_prefixes: Collection[str], **options: Unpack[DatasetOptions]
    ) -> None:
        super().__init__(**options)
        self._resolver = resolver
        self._prefixes = frozenset(doi_prefixes)

    def claims(self, repo: str) -> bool:
        doi = parse_doi(repo)
        if doi is not None:
            return doi_prefix(doi) in self._prefixes
        return self._parse_url(repo) is not None

    def canonical(self, repo: str) -> str:
        doi = parse_doi(repo)
        if doi is not None:
            return doi
        found = self._parse_url(repo)
        if found is None:
            raise InvalidSpec(
                f"a {self.host_name} spec is a DOI such as {self.spec_example} or {self._url_usage()}"
            )
        return self._record_url(found)

    async def _locate(self, repo: str) -> U:
        """What the canonical `repo` names: read from its URL, or found by following its DOI."""
        doi = parse_doi(repo)
        if doi is not None:
            return await self._from_doi(doi)
        found = self._parse_url(repo)
        if found is None:  # canonical() made it one; a changed configuration could not
            raise InvalidSpec(f"{repo[:100]!r} is not {self.url_what}")
        return found

    @abstractmethod
    def _parse_url(self, url: str) -> U | None:
        """What a record URL on this provider's host names; None for any other string."""

    @abstractmethod
    def _record_url(self, found: U) -> str:
        """The canonical URL of what `_parse_url` read."""

    @abstractmethod
    def _url_usage(self) -> str:
        """The record URL form, for InvalidSpec: "a record URL on <sites> (<site>/records/<id>)"."""

    @abstractmethod
    async def _from_doi(self, doi: str) -> U:
        """What `doi` names, usually by following it through `self._resolver`."""


class SiteDatasetProvider(DoiDatasetProvider[U]):
    """Records on several configured sites (Zenodo's, Dataverse installations), each with its own API."""

    def __init__(
        self,
        apis: Mapping[str, HttpApi],
        resolver: DoiResolver,
        *,
        doi_prefixes: Collection[str],
        **options: Unpack[DatasetOptions],
    ) -> None:
        """`apis`: site web URL -> its REST API (`<site>/api`)."""
        super().__init__(resolver, doi_prefixes=doi_prefixes, **options)
        self._apis = {site.rstrip("/"): api for site, api in apis.items()}
        self._sites = {(urlsplit(site).hostname or "").lower(): site for site in self._apis}

    def _site_of(self, url: str) -> str | None:
        """The configured site on `url`'s host, if any."""
        try:
            return self._sites.get((urlsplit(url).hostname or "").lower())
        except ValueError:
            return None

    def _on_site(self, url: str) -> tuple[str, SplitResult] | None:
        """(site, parts) of an http(s) URL on a configured site (and port), without credentials."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        site = self._sites.get((parts.hostname or "").lower())
        if site is None or parts.scheme not in ("http", "https") or parts.username or parts.password:
            return None
        if port != urlsplit(site).port:
            return None
        return site, parts
