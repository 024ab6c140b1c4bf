"""list_refs over http(s): git's smart HTTP protocol (v0/v1), one GET of `info/refs` through httpx."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from ...errors import RepoNotFound, RepoUnreachable
from ...security.redaction import redact_url
from .protocol import RefsParser, RemoteRefs

__all__ = ["info_refs_url", "list_refs"]

_USER_AGENT: Final = "git/binder-service"  # some hosts only speak the smart protocol to "git/*" agents
_HEADERS: Final = {"User-Agent": _USER_AGENT, "Pragma": "no-cache", "Cache-Control": "no-cache"}


def info_refs_url(url: str) -> str:
    """Where a smart HTTP server advertises the refs of the repository at `url` (no userinfo)."""
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    path = parts.path.rstrip("/") + "/info/refs"
    return urlunsplit((parts.scheme, hostport, path, "service=git-upload-pack", ""))


async def list_refs(
    http: httpx.AsyncClient, url: str, *, auth: httpx.BasicAuth | None, http_timeout: float
) -> RemoteRefs:
    """The refs the server at `url` advertises, read only up to the advertisement's closing flush.

    `auth` is the operator's credential for this exact origin. httpx drops it on a redirect to another
    origin (except http -> https on the same host), so it never reaches a host it was not meant for."""
    shown = redact_url(url)
    async with http.stream(
        "GET", info_refs_url(url), headers=_HEADERS, auth=auth, timeout=http_timeout, follow_redirects=True
    ) as resp:
        if resp.status_code in (401, 403, 404, 410):
            raise RepoNotFound(f"repository not found or not public: {shown}")
        if resp.status_code != 200:
            raise RepoUnreachable(f"{shown} answered HTTP {resp.status_code}")
        ctype = resp.headers.get("content-type", "").partition(";")[0].strip().lower()
        if ctype != "application/x-git-upload-pack-advertisement":
            raise RepoUnreachable(
                f"{shown} does not speak git's smart HTTP protocol (dumb HTTP servers are not supported)"
            )
        parser = RefsParser(shown, smart_http=True)
        async for chunk in resp.aiter_bytes():
            if parser.feed(chunk):
                break
        return parser.result()
