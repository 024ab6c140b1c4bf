"""The `dataverse` provider: a dataset on a configured Dataverse installation. Spec: a DOI.

`10.7910/DVN/TJCLKP` is followed through doi.org to its installation (which must be configured), then
`GET /api/datasets/:persistentId?persistentId=doi:<doi>` (the native API) gives the dataset and its
latest published version: `v<major>.<minor>` is the "commit", the persistent id the build slug.
A dataset URL (`<installation>/dataset.xhtml?persistentId=doi:...`) names its installation directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from ..errors import InvalidSpec, RepoNotFound, UpstreamError
from .base import RepoSpec, ResolvedRepo
from .datasets import DatasetProvider, json_object
from .detect import host_of
from .doi import DoiResolver, doi_prefix, parse_doi
from .http_api import HttpApi, pick

__all__ = ["DataverseProvider"]

_PAGES = ("/dataset.xhtml", "/citation", "/dataset.xhtml/")


@dataclass(frozen=True, slots=True)
class Dataset:
    site: str
    persistent_id: str  # "doi:10.7910/DVN/TJCLKP", as the installation spells it
    version: str  # "v3.0"


class DataverseProvider(DatasetProvider):
    """Datasets on the configured Dataverse installations (e.g. dataverse.harvard.edu)."""

    name = "dataverse"
    display_name = "Dataverse DOI"
    spec_example = "10.7910/DVN/TJCLKP"
    spec_regex = r"^(?P<doi>10\.\d+/.+)$"
    repo_label = "Dataverse DOI or dataset URL"

    def __init__(
        self,
        apis: dict[str, HttpApi],
        resolver: DoiResolver,
        *,
        doi_prefixes: list[str],
        max_input_length: int,
        ref_cache_ttl: float = 0.0,
        not_found_ttl: float = 30.0,
    ) -> None:
        """`apis`: installation URL -> its native API (`<installation>/api`)."""
        super().__init__(
            max_input_length=max_input_length, ref_cache_ttl=ref_cache_ttl, not_found_ttl=not_found_ttl
        )
        self._apis = {site.rstrip("/"): api for site, api in apis.items()}
        self._sites = {(urlsplit(site).hostname or "").lower(): site for site in self._apis}
        self._resolver = resolver
        self._prefixes = frozenset(doi_prefixes)

    # --- specs ------------------------------------------------------------------------------------

    def claims(self, repo: str) -> bool:
        doi = parse_doi(repo)
        if doi is not None:
            return doi_prefix(doi) in self._prefixes
        return self._dataset_url(repo) is not None

    def canonical(self, repo: str) -> str:
        doi = parse_doi(repo)
        if doi is not None:
            return doi
        found = self._dataset_url(repo)
        if found is None:
            raise InvalidSpec(
                f"a Dataverse spec is a DOI such as {self.spec_example} or a dataset URL "
                "(<installation>/dataset.xhtml?persistentId=doi:...) on a configured installation"
            )
        site, doi = found
        return f"{site}/dataset.xhtml?persistentId=doi:{doi}"

    def _dataset_url(self, url: str) -> tuple[str, str] | None:
        """(installation, DOI) of a dataset or citation page on a configured installation."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        site = self._sites.get((parts.hostname or "").lower())
        if site is None or parts.scheme not in ("http", "https") or parts.username or parts.password:
            return None
        if port != urlsplit(site).port or parts.path not in _PAGES:
            return None
        ids = parse_qs(parts.query).get("persistentId", [])
        doi = parse_doi(ids[0]) if len(ids) == 1 and ids[0].lower().startswith("doi:") else None
        return (site, doi) if doi else None

    # --- resolving --------------------------------------------------------------------------------

    async def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        dataset = await self.cached(spec.repo.lower(), lambda: self._lookup(spec.repo))
        return ResolvedRepo(
            provider=self.name,
            repo_url=f"{dataset.site}/dataset.xhtml?persistentId={dataset.persistent_id}",
            ref=spec.ref,
            commit=dataset.version,
            build_slug=f"{host_of(dataset.site)}/{dataset.persistent_id.removeprefix('doi:')}",
            content_provider="Dataverse",
        )

    async def _lookup(self, repo: str) -> Dataset:
        found = self._dataset_url(repo)
        if found is None:
            doi = parse_doi(repo)
            if doi is None:
                raise InvalidSpec(f"{repo[:100]!r} is not a Dataverse DOI or dataset URL")
            site = await self._resolver.locate(
                doi,
                hosts=self._sites,
                accept=lambda url: self._site_of(url),
                what="a dataset on a configured Dataverse installation",
            )
            found = (site, doi)
        return await self._dataset(*found)

    def _site_of(self, url: str) -> str | None:
        try:
            return self._sites.get((urlsplit(url).hostname or "").lower())
        except ValueError:
            return None

    async def _dataset(self, site: str, doi: str) -> Dataset:
        api = self._apis[site]
        reply = await api.get(f"/datasets/:persistentId?persistentId={quote('doi:' + doi, safe=':/')}")
        if reply.status in (404, 410):
            raise RepoNotFound(f"dataset doi:{doi} not found on {host_of(site)}")
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for a dataset")
        data = json_object(reply)
        if data.get("status") != "OK":
            raise UpstreamError(f"{reply.api} answered status {str(data.get('status'))[:40]!r}")
        latest = pick(data, "data", "latestVersion", kind=dict, api=reply.api)
        state = latest.get("versionState")
        if state == "DEACCESSIONED":
            raise RepoNotFound(f"dataset doi:{doi} on {host_of(site)} was deaccessioned")
        major = pick(latest, "versionNumber", kind=int, api=reply.api)
        minor = pick(latest, "versionMinorNumber", kind=int, api=reply.api)
        protocol = pick(data, "data", "protocol", kind=str, api=reply.api)
        authority = pick(data, "data", "authority", kind=str, api=reply.api)
        identifier = pick(data, "data", "identifier", kind=str, api=reply.api)
        persistent = f"{protocol}:{authority}/{identifier}"
        if parse_doi(persistent) is None:
            raise UpstreamError(f"{reply.api} answered with an unreadable persistent id")
        return Dataset(site=site, persistent_id=persistent, version=f"v{major}.{minor}")
