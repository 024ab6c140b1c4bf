"""The `hydroshare` provider: a HydroShare resource. Spec: its id, URL or DOI.

A resource is `<site>/resource/<32 hex id>`; its DOI reads `10.4211/hs.<id>`, so neither needs doi.org.
HydroShare keeps no history: as BinderHub does, the "commit" is the resource's last modification
(`GET /hsapi/resource/<id>/scimeta/elements`, the `modified` date) as `v<epoch seconds>`, which only
decides when a new image is built; the build fetches the resource as it is then.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Self, Unpack

from ..errors import InvalidSpec, RepoNotFound, UpstreamError
from .datasets import DatasetOptions, DatasetProvider, Pinned, epoch_version
from .detect import host_of, url_path
from .doi import parse_doi
from .http_api import HttpApi, pick

if TYPE_CHECKING:
    from .registry import ProviderContext

__all__ = ["HydroShareProvider"]

HYDROSHARE_PREFIX = "10.4211"
_ID = re.compile(r"[0-9a-f]{32}")
_DOI_SUFFIX = re.compile(r"hs\.([0-9a-f]{32})")


class HydroShareProvider(DatasetProvider):
    """Resources on HydroShare (www.hydroshare.org)."""

    name = "hydroshare"
    display_name = "HydroShare resource"
    spec_example = "https%3A%2F%2Fwww.hydroshare.org%2Fresource%2Fb8f6eae9d89241cf8b5904033460af61"
    spec_regex = r"^(?P<resource>.*[0-9a-f]{32}.*)$"
    repo_label = "HydroShare resource URL, id or DOI"
    content_provider = "Hydroshare"

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as the settings configure it (the providers' registry calls this)."""
        s = context.settings
        api = context.api("HydroShare API", s.hydroshare_url + "/hsapi")
        return cls(api, web_url=s.hydroshare_url, **context.options)

    def __init__(self, api: HttpApi, *, web_url: str, **options: Unpack[DatasetOptions]) -> None:
        super().__init__(**options)
        self._api = api
        self._web_url = web_url.rstrip("/")
        self._host = host_of(self._web_url)

    def _resource_id(self, repo: str) -> str | None:
        doi = parse_doi(repo)
        if doi is not None:
            prefix, _, suffix = doi.partition("/")
            match = _DOI_SUFFIX.fullmatch(suffix.lower())
            return match.group(1) if prefix == HYDROSHARE_PREFIX and match else None
        path = url_path(repo, self._web_url)
        if path is None:
            # hydroshare.org and www.hydroshare.org are one site
            bare = self._web_url.replace("://www.", "://", 1)
            path = url_path(repo, bare) if bare != self._web_url else None
        if path is not None:
            parts = path.split("/")
            ok = len(parts) == 2 and parts[0] == "resource" and _ID.fullmatch(parts[1])
            return parts[1] if ok else None
        return repo if _ID.fullmatch(repo) else None

    def claims(self, repo: str) -> bool:
        return not _ID.fullmatch(repo) and self._resource_id(repo) is not None  # a bare id could be anything

    def canonical(self, repo: str) -> str:
        resource = self._resource_id(repo)
        if resource is None:
            raise InvalidSpec(
                f"a HydroShare spec is a resource URL ({self._web_url}/resource/<32 hex id>), "
                f"its id, or its DOI (10.4211/hs.<id>)"
            )
        return resource

    async def _pin(self, repo: str) -> Pinned:
        return Pinned(
            repo_url=f"{self._web_url}/resource/{repo}",
            commit=await self._modified(repo),
            build_slug=f"{self._host}/{repo}",
        )

    async def _modified(self, resource: str) -> str:
        reply = await self._api.get(f"/resource/{resource}/scimeta/elements")
        if reply.status in (404, 410):
            raise RepoNotFound(f"HydroShare resource {resource} not found")
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for a resource")
        dates: list[Any] = pick(reply.json(), "dates", kind=list, api=reply.api)
        modified = [d.get("start_date") for d in dates if isinstance(d, dict) and d.get("type") == "modified"]
        if not modified:
            raise UpstreamError(f"{reply.api} answered without a 'modified' date for resource {resource}")
        return epoch_version(modified[0], api=reply.api, field="dates[modified].start_date")
