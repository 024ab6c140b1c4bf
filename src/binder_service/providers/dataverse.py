"""The `dataverse` provider: a dataset on a configured Dataverse installation. Spec: a DOI.

`10.7910/DVN/TJCLKP` is followed through doi.org to its installation (which must be configured), then
`GET /api/datasets/:persistentId?persistentId=doi:<doi>` (the native API) gives the dataset and its
latest published version: `v<major>.<minor>` is the "commit", the persistent id the build slug.
A dataset URL (`<installation>/dataset.xhtml?persistentId=doi:...`) names its installation directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Self
from urllib.parse import parse_qs, quote

from ..errors import RepoNotFound, UpstreamError
from .datasets import Pinned, SiteDatasetProvider, json_object
from .detect import host_of
from .doi import parse_doi
from .http_api import pick

if TYPE_CHECKING:
    from .registry import ProviderContext

__all__ = ["DataverseProvider"]

_PAGES = ("/dataset.xhtml", "/citation", "/dataset.xhtml/")


@dataclass(frozen=True, slots=True)
class Dataset:
    site: str
    persistent_id: str  # "doi:10.7910/DVN/TJCLKP", as the installation spells it
    version: str  # "v3.0"


class DataverseProvider(SiteDatasetProvider[tuple[str, str]]):
    """Datasets on the configured Dataverse installations (e.g. dataverse.harvard.edu).

    `apis`: installation URL -> its native API (`<installation>/api`).
    """

    name = "dataverse"
    display_name = "Dataverse DOI"
    spec_example = "10.7910/DVN/TJCLKP"
    spec_regex = r"^(?P<doi>10\.\d+/.+)$"
    repo_label = "Dataverse DOI or dataset URL"
    content_provider = "Dataverse"
    host_name = "Dataverse"
    url_what = "a Dataverse DOI or dataset URL"

    # --- specs ------------------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as the settings configure it (the providers' registry calls this)."""
        s = context.settings
        apis = {
            u: context.api(f"Dataverse API at {host_of(u)}", u + "/api") for u in s.dataverse_installations
        }
        return cls(apis, context.doi, doi_prefixes=s.dataverse_doi_prefixes, **context.options)

    def _parse_url(self, url: str) -> tuple[str, str] | None:
        """(installation, DOI) of a dataset or citation page on a configured installation."""
        found = self._on_site(url)
        if found is None or found[1].path not in _PAGES:
            return None
        site, parts = found
        ids = parse_qs(parts.query).get("persistentId", [])
        doi = parse_doi(ids[0]) if len(ids) == 1 and ids[0].lower().startswith("doi:") else None
        return (site, doi) if doi else None

    def _record_url(self, found: tuple[str, str]) -> str:
        site, doi = found
        return f"{site}/dataset.xhtml?persistentId=doi:{doi}"

    def _url_usage(self) -> str:
        return (
            "a dataset URL (<installation>/dataset.xhtml?persistentId=doi:...) on a configured installation"
        )

    # --- resolving --------------------------------------------------------------------------------

    async def _pin(self, repo: str) -> Pinned:
        dataset = await self._dataset(*await self._locate(repo))
        return Pinned(
            repo_url=f"{dataset.site}/dataset.xhtml?persistentId={dataset.persistent_id}",
            commit=dataset.version,
            build_slug=f"{host_of(dataset.site)}/{dataset.persistent_id.removeprefix('doi:')}",
        )

    async def _from_doi(self, doi: str) -> tuple[str, str]:
        site = await self._resolver.locate(
            doi,
            hosts=self._sites,
            accept=self._site_of,
            what="a dataset on a configured Dataverse installation",
        )
        return site, doi

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
