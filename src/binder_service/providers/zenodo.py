"""The `zenodo` provider: a record on Zenodo (or another InvenioRDM site). Spec: a DOI.

`10.5281/zenodo.3242074` is looked up at doi.org, which sends it to the record's site; Zenodo sends a
concept DOI (all versions) on to its newest record. The record id found is the version (each version of
a Zenodo upload is its own record) and `GET /api/records/<id>` confirms it exists (404 unknown, 410
deleted). The build slug is the concept record id, shared by all versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import InvalidSpec, RepoNotFound, UpstreamError
from .base import RepoSpec, ResolvedRepo
from .datasets import DatasetProvider, json_object
from .detect import host_of
from .doi import DoiResolver, doi_prefix, parse_doi
from .http_api import HttpApi, Reply

__all__ = ["ZenodoProvider"]

_RECORD_PATH = re.compile(r"/records?/(\d{1,20})/?")


@dataclass(frozen=True, slots=True)
class Record:
    site: str  # web URL of the site, e.g. https://zenodo.org
    id: str  # this version's record id
    concept: str  # the concept record id, shared by all versions


class ZenodoProvider(DatasetProvider):
    """Zenodo records by DOI or record URL, on the configured sites (zenodo.org, its sandbox, ...)."""

    name = "zenodo"
    display_name = "Zenodo DOI"
    spec_example = "10.5281/zenodo.3242074"
    spec_regex = r"^(?P<doi>10\.\d+/.+)$"
    repo_label = "Zenodo DOI or record URL"

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
        """`apis`: site web URL -> its REST API (`<site>/api`)."""
        super().__init__(
            max_input_length=max_input_length, ref_cache_ttl=ref_cache_ttl, not_found_ttl=not_found_ttl
        )
        self._apis = {site.rstrip("/"): api for site, api in apis.items()}
        self._hosts = {urlsplit(site).hostname or "": site for site in self._apis}
        self._resolver = resolver
        self._prefixes = frozenset(doi_prefixes)

    # --- specs ------------------------------------------------------------------------------------

    def claims(self, repo: str) -> bool:
        doi = parse_doi(repo)
        if doi is not None:
            return doi_prefix(doi) in self._prefixes
        return self._record_url(repo) is not None

    def canonical(self, repo: str) -> str:
        doi = parse_doi(repo)
        if doi is not None:
            return doi
        found = self._record_url(repo)
        if found is None:
            sites = ", ".join(self._apis)
            raise InvalidSpec(
                f"a Zenodo spec is a DOI such as {self.spec_example} or a record URL on {sites} "
                "(<site>/records/<id>)"
            )
        site, record_id = found
        return f"{site}/records/{record_id}"

    def _record_url(self, url: str) -> tuple[str, str] | None:
        """(site, record id) of a record URL on a configured site."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        site = self._hosts.get((parts.hostname or "").lower())
        if site is None or parts.scheme not in ("http", "https") or parts.username or parts.password:
            return None
        if port != urlsplit(site).port:
            return None
        match = _RECORD_PATH.fullmatch(parts.path)
        return (site, match.group(1)) if match else None

    # --- resolving --------------------------------------------------------------------------------

    async def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        record = await self.cached(spec.repo.lower(), lambda: self._lookup(spec.repo))
        return ResolvedRepo(
            provider=self.name,
            # The version's own record URL: the build fetches exactly what was resolved.
            repo_url=f"{record.site}/record/{record.id}",
            ref=spec.ref,
            commit=record.id,
            build_slug=f"{host_of(record.site)}/{record.concept}",
            content_provider="Zenodo",
        )

    async def _lookup(self, repo: str) -> Record:
        doi = parse_doi(repo)
        if doi is not None:
            site, record_id = await self._resolver.locate(
                doi, hosts=self._hosts, accept=self._record_url, what="a Zenodo record"
            )
        else:
            found = self._record_url(repo)
            if found is None:  # canonical() made it one; a changed configuration could not
                raise InvalidSpec(f"{repo[:100]!r} is not a record URL on a configured Zenodo site")
            site, record_id = found
        return await self._record(site, record_id)

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
