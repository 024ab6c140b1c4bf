"""DOIs: recognising them, and following doi.org to where one points, hop by hop.

The dataset providers (`zenodo`, `figshare`, `hydroshare`, `dataverse`) take DOIs. doi.org answers
`GET /<doi>` with a redirect to the URL registered for the DOI (404 for an unknown DOI); that URL may
redirect again on the record's own host (Zenodo sends `/doi/<doi>` on to `/records/<id>`). We follow
those hops ourselves, through the shared client, asking for no body: at most `MAX_HOPS`, all within one
timeout, and only to hosts the asking provider names (doi.org's first answer excepted): a DOI never
makes us fetch an arbitrary page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Collection
from typing import Final, TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx

from ..caching import AsyncCache
from ..errors import BinderError, RepoNotFound, RepoUnreachable, UpstreamError, UpstreamTimeout
from ..security.redaction import scrub
from .http_api import _USER_AGENT

__all__ = ["MAX_HOPS", "DoiResolver", "doi_prefix", "parse_doi"]

MAX_HOPS: Final = 5
# DOI syntax (ISO 26324): "10.<registrant>/<suffix>"; the suffix is any printable text. We take the
# common practical form: no whitespace or control characters, bounded length.
_DOI = re.compile(r"10\.\d{4,9}(?:\.\d+)*/[^\s\x00-\x1f\x7f]{1,300}")
_PREFIXES: Final = (
    "doi:",
    "https://doi.org/",
    "http://doi.org/",
    "https://dx.doi.org/",
    "http://dx.doi.org/",
)

T = TypeVar("T")


def parse_doi(text: str) -> str | None:
    """`10.x/y`, `doi:10.x/y` or a doi.org URL -> the DOI (`10.x/y`, escapes undone); None otherwise."""
    value = text.strip()
    for prefix in _PREFIXES:
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
            break
    if "%" in value:
        value = unquote(value)
    return value if _DOI.fullmatch(value) and value.isprintable() else None


def doi_prefix(doi: str) -> str:
    """`10.5281/zenodo.1` -> `10.5281`."""
    return doi.partition("/")[0]


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


class DoiResolver:
    """doi.org (or the configured handle proxy), asked through the shared client; first hops cached."""

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, timeout: float, cache_ttl: float) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        # DOI -> registered URL. Registrations change rarely; what a record URL redirects to (the newest
        # version of a concept) is asked again every time.
        self._registered: AsyncCache[str, str] = AsyncCache(ttl=cache_ttl)

    async def locate(
        self, doi: str, *, hosts: Collection[str], accept: Callable[[str], T | None], what: str
    ) -> T:
        """Follow `doi` until `accept(url)` returns something; only hops to `hosts` are followed.

        RepoNotFound when doi.org does not know the DOI or it points elsewhere; RepoUnreachable,
        UpstreamTimeout or UpstreamError when a hop fails.
        """
        try:
            async with asyncio.timeout(self._timeout):
                return await self._locate(doi, hosts, accept, what)
        except BinderError:
            raise
        except (TimeoutError, httpx.TimeoutException) as e:
            raise UpstreamTimeout(f"resolving DOI {doi[:200]} took longer than {self._timeout:g}s") from e
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as e:
            reason = scrub(str(e), limit=200) or type(e).__name__
            raise RepoUnreachable(f"cannot resolve DOI {doi[:200]}: {reason}") from e

    async def _locate(
        self, doi: str, hosts: Collection[str], accept: Callable[[str], T | None], what: str
    ) -> T:
        url = await self._registered.get_or_compute(
            doi.lower(), lambda: self._first_hop(doi)
        )  # DOIs ignore case
        for _ in range(MAX_HOPS):
            found = accept(url)
            if found is not None:
                return found
            if _host(url) not in hosts:
                raise RepoNotFound(
                    f"DOI {doi[:200]} is not {what} (it points to {_host(url) or url[:100]!r})"
                )
            status, location = await self._get(url)
            if location is None:
                raise RepoNotFound(
                    f"DOI {doi[:200]} points to {url[:200]}, which is not {what} (HTTP {status})"
                )
            url = location
        raise RepoUnreachable(f"DOI {doi[:200]} redirected more than {MAX_HOPS} times")

    async def _first_hop(self, doi: str) -> str:
        url = f"{self.base_url}/{quote(doi, safe='/')}"
        status, location = await self._get(url)
        if status == 404:
            raise RepoNotFound(f"DOI {doi[:200]} not found (doi.org does not know it)")
        if location is None:
            raise UpstreamError(f"doi.org answered HTTP {status} for DOI {doi[:200]} without a redirect")
        return location

    async def _get(self, url: str) -> tuple[int, str | None]:
        headers = {"User-Agent": _USER_AGENT, "Accept": "text/html,application/json;q=0.9,*/*;q=0.1"}
        async with self._http.stream(
            "GET", url, headers=headers, timeout=self._timeout, follow_redirects=False
        ) as response:  # the body is never read: only the status and Location matter
            status = response.status_code
            if status >= 500:
                raise RepoUnreachable(f"{_host(url)} answered {status} while resolving a DOI")
            if status == 429:
                raise RepoUnreachable(f"{_host(url)} is rate limiting DOI lookups; try again later")
            if response.has_redirect_location:
                target = urljoin(url, response.headers["location"])
                if urlsplit(target).scheme not in ("http", "https"):
                    raise UpstreamError(f"{_host(url)} redirected to a non-HTTP URL")
                return status, target
            return status, None
