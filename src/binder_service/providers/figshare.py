"""The `figshare` provider: a Figshare article at a version. Spec: a DOI.

Figshare's DOIs read `10.6084/m9.figshare.<article id>[.v<version>]`, so they are read without asking
doi.org; other DOIs (institutional portals) are followed through doi.org to an article URL
(`.../articles/<type>/<title>/<id>[/<version>]`). `GET /v2/articles/<id>/versions` lists the versions:
the one named, or else the newest, is the "commit" (`v<n>`). The slug is the article id.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Self, Unpack
from urllib.parse import urlsplit

from ..errors import InvalidSpec, RefNotFound, RepoNotFound, UpstreamError
from .datasets import DatasetOptions, DoiDatasetProvider, Pinned
from .detect import host_of
from .doi import DoiResolver, doi_prefix
from .http_api import HttpApi, pick

if TYPE_CHECKING:
    from .registry import ProviderContext

__all__ = ["FigshareProvider"]

FIGSHARE_PREFIX = "10.6084"
_FIGSHARE_DOI = re.compile(r"m9\.figshare\.(\d{1,20})(?:\.v(\d{1,9}))?", re.IGNORECASE)
# Article URLs: /articles/<id>, /articles/<title>/<id>, /articles/<type>/<title>/<id>, then /<version>.
_ARTICLE_PATH = re.compile(r"/articles/(?:[^/]+/){0,2}?(\d{1,20})(?:/(\d{1,9}))?/?")


class FigshareProvider(DoiDatasetProvider[tuple[str, str | None]]):
    """Figshare articles (figshare.com and its institutional portals) through the public API v2."""

    name = "figshare"
    display_name = "Figshare DOI"
    spec_example = "10.6084/m9.figshare.9782777.v1"
    spec_regex = r"^(?P<doi>10\.\d+/.+)$"
    repo_label = "Figshare DOI or article URL"
    content_provider = "Figshare"
    host_name = "Figshare"
    url_what = "a Figshare article URL"

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as the settings configure it (the providers' registry calls this)."""
        s = context.settings
        api = context.api("Figshare API", s.figshare_api_url)
        return cls(api, context.doi, web_url=s.figshare_url, **context.options)

    def __init__(
        self, api: HttpApi, resolver: DoiResolver, *, web_url: str, **options: Unpack[DatasetOptions]
    ) -> None:
        super().__init__(resolver, doi_prefixes=[FIGSHARE_PREFIX], **options)
        self._api = api
        self._web_url = web_url.rstrip("/")
        self._host = host_of(self._web_url)

    # --- specs ------------------------------------------------------------------------------------

    def _on_figshare(self, host: str) -> bool:
        return host == self._host or host.endswith("." + self._host)  # portals: <name>.figshare.com

    def _parse_url(self, url: str) -> tuple[str, str | None] | None:
        """(article id, version or None) of an article URL on Figshare."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or parts.username or parts.password:
            return None
        if not self._on_figshare((parts.hostname or "").lower()):
            return None
        match = _ARTICLE_PATH.fullmatch(parts.path)
        return (match.group(1), match.group(2)) if match else None

    def _record_url(self, found: tuple[str, str | None]) -> str:
        article, version = found
        return f"{self._web_url}/articles/_/{article}" + (f"/{version}" if version else "")

    def _url_usage(self) -> str:
        return f"an article URL ({self._web_url}/articles/<type>/<title>/<id>[/<version>])"

    # --- resolving --------------------------------------------------------------------------------

    async def _pin(self, repo: str) -> Pinned:
        article, version = await self._lookup(repo)
        return Pinned(
            # repo2docker reads the article id and version from this URL form.
            repo_url=f"{self._web_url}/articles/_/{article}/{version}",
            commit=f"v{version}",
            build_slug=f"{self._host}/{article}",
        )

    async def _from_doi(self, doi: str) -> tuple[str, str | None]:
        if doi_prefix(doi) == FIGSHARE_PREFIX:  # the article id and version are in the DOI
            match = _FIGSHARE_DOI.fullmatch(doi.partition("/")[2])
            if match is None:
                raise InvalidSpec(f"{doi[:100]!r} is not a Figshare article DOI (10.6084/m9.figshare.<id>)")
            return match.group(1), match.group(2)
        return await self._resolver.locate(
            doi, hosts={self._host}, accept=self._parse_url, what="a Figshare article"
        )

    async def _lookup(self, repo: str) -> tuple[str, int]:
        article, asked = await self._locate(repo)
        reply = await self._api.get(f"/articles/{article}/versions")
        if reply.status in (404, 410):
            raise RepoNotFound(f"Figshare article {article} not found")
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for an article's versions")
        listed = pick(reply.json(), kind=list, api=reply.api)
        versions = {pick(v, "version", kind=int, api=reply.api) for v in listed}
        if not versions:
            raise RepoNotFound(f"Figshare article {article} has no published version")
        if asked is None:
            return article, max(versions)  # an unversioned DOI names the article as it is now
        if int(asked) not in versions:
            raise RefNotFound(f"Figshare article {article} has no version {int(asked)}")
        return article, int(asked)
