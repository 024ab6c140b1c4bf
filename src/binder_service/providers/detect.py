"""Recognising a provider's own web URLs, so the native API can pick the provider from `repo` alone."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["host_of", "url_path"]


def host_of(base_url: str) -> str:
    """`host[:port]` of a configured web address, for build slugs (e.g. "github.com")."""
    return urlsplit(base_url).netloc.rpartition("@")[2].lower()


def url_path(repo: str, base_url: str) -> str | None:
    """The path of `repo` below `base_url` (URL-escaped, no outer slashes) if it is an http(s) URL there.

    None for anything else, including URLs that carry credentials: the `git` provider keeps those for
    the clone, where an API provider would drop them. Query and fragment are ignored.
    """
    try:
        url, base = urlsplit(repo), urlsplit(base_url)
        same_port = url.port == base.port
    except ValueError:  # a port that is not a number
        return None
    if url.scheme.lower() not in ("http", "https") or url.username is not None or url.password is not None:
        return None
    if not same_port or (url.hostname or "") != (base.hostname or "").lower() or not url.hostname:
        return None
    prefix = base.path.rstrip("/") + "/"
    path = url.path if url.path.endswith("/") else url.path + "/"
    if not path.startswith(prefix):
        return None
    return path[len(prefix) :].strip("/")
