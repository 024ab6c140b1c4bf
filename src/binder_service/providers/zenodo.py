"""The `zenodo` provider: a record on Zenodo (or another InvenioRDM site). Spec: a DOI.

`10.5281/zenodo.3242074` is looked up at doi.org, which sends it to the record's site; Zenodo sends a
concept DOI (all versions) on to its newest record. The record id found is the version (each version of
a Zenodo upload is its own record) and `GET /api/records/<id>` confirms it exists (404 unknown, 410
deleted). The build slug is the concept record id, shared by all versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from ..errors import RepoNotFound, UpstreamError
from .datasets import Pinned, SiteDatasetProvider, json_object
from .detect import host_of
from .http_api import Reply

if TYPE_CHECKING:
    from .registry import ProviderContext

__all__ = ["ZenodoProvider"]

_RECORD_PATH = re.compile(r"/records?/(\d{1,20})/?")


@dataclass(frozen=True, slots=True)
class Record:
    site: str  # web URL of the site, e.g. https://zenodo.org
    id: str  # this version's record id
    concept: str  # the concept record id, shared by all versions


class ZenodoProvider(SiteDatasetProvider[tuple[str, str]]):
    """Zenodo records by DOI or record URL, on the configured sites (zenodo.org, its sandbox, ...).

    `apis`: site web URL -> its REST API (`<site>/api`).
    """

    name = "zenodo"
    display_name = "Zenodo DOI"
    spec_example = "10.5281/zenodo.3242074"
    spec_regex = r"^(?P<doi>10\.\d+/.+)$"
    repo_label = "Zenodo DOI or record URL"
    content_provider = "Zenodo"
    host_name = "Zenodo"
    url_what = "a record URL on a configured Zenodo site"

    # --- specs ------------------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as the settings configure it (the providers' registry calls this)."""
        s = context.settings
        apis = {u: context.api(f"Zenodo API at {host_of(u)}", u + "/api") for u in s.zenodo_urls}
        return cls(apis, context.doi, doi_prefixes=s.zenodo_doi_prefixes, **context.options)

    def _parse_url(self, url: str) -> tuple[str, str] | None:
        """(site, record id) of a record URL on a configured site."""
        found = self._on_site(url)
        if found is None:
            return None
        site, parts = found
        match = _RECORD_PATH.fullmatch(parts.path)
        return (site, match.group(1)) if match else None

    def _record_url(self, found: tuple[str, str]) -> str:
        site, record_id = found
        return f"{site}/records/{record_id}"

    def _url_usage(self) -> str:
        return f"a record URL on {', '.join(self._apis)} (<site>/records/<id>)"

    # --- resolving --------------------------------------------------------------------------------

    async def _pin(self, repo: str) -> Pinned:
        record = await self._record(*await self._locate(repo))
        return Pinned(
            # The version's own record URL: the build fetches exactly what was resolved.
            repo_url=f"{record.site}/record/{record.id}",
            commit=record.id,
            build_slug=f"{host_of(record.site)}/{record.concept}",
        )

    async def _from_doi(self, doi: str) -> tuple[str, str]:
        return await self._resolver.locate(
            doi, hosts=self._sites, accept=self._parse_url, what="a Zenodo record"
        )

    async def _record(self, site: str, record_id: str) -> Record:
        api = self._apis[site]
        # A concept id answers with a redirect to its newest record; HttpApi follows it on the same host.
        reply = await api.get(f"/records/{record_id}", headers={"Accept": "application/json"})
        if reply.status == 410:
            reason = _removal_reason(reply)
            raise RepoNotFound(f"Zenodo record {record_id} was deleted" + (f" ({reason})" if reason else ""))
        if reply.status in (404, 422, 451):
            raise RepoNotFound(f"Zenodo record {record_id} not found on {host_of(site)}")
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for a record")
        data = json_object(reply)
        found = data.get("id")
        concept = data.get("conceptrecid", found)
        if isinstance(found, bool) or not isinstance(found, (int, str)) or not str(found).isdigit():
            raise UpstreamError(f"{reply.api} answered without a valid record 'id'")
        if isinstance(concept, bool) or not isinstance(concept, (int, str)) or not str(concept).isdigit():
            raise UpstreamError(f"{reply.api} answered without a valid 'conceptrecid'")
        return Record(site=site, id=str(found), concept=str(concept))


def _removal_reason(reply: Reply) -> str:
    """The reason in an InvenioRDM tombstone (`tombstone.removal_reason.id`), '' when there is none."""
    try:
        data = reply.json()
    except UpstreamError:
        return ""
    if not isinstance(data, dict):
        return ""
    tombstone = data.get("tombstone")
    reason = tombstone.get("removal_reason") if isinstance(tombstone, dict) else None
    value = reason.get("id") if isinstance(reason, dict) else None
    return value[:60] if isinstance(value, str) and value.isprintable() else ""
