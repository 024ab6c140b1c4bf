"""Repository URLs: which ones we may contact, the transport git would use, the host they name.

No I/O here. `check_git_url` is the policy every git URL passes before anything connects to it. Keeping
credentials out of what we show (`redact_url`, `scrub`) is `security/redaction.py`'s job.
"""

from __future__ import annotations

import functools
import re
from typing import Final
from urllib.parse import urlsplit

from ...errors import InputTooLarge, InvalidSpec, RepoNotAllowed
from ...security.redaction import redact_url

__all__ = [
    "DEFAULT_PROTOCOLS",
    "check_git_url",
    "has_blank_or_control",
    "http_origin",
    "is_commit_id",
    "transport",
    "url_host",
]

DEFAULT_PROTOCOLS: Final = frozenset({"http", "https", "git", "ssh"})
_NETWORK_PROTOCOLS: Final = frozenset({"http", "https", "git", "ssh"})
_SCHEME_ALIASES: Final = {"git+ssh": "ssh", "ssh+git": "ssh"}
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# git's "<transport>::<address>" remote-helper syntax (ext::, fd::, ...) runs arbitrary helpers.
_HELPER = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
_BRACKETED = re.compile(r"\[[0-9A-Fa-f:.]+(%[^\]]+)?\](:[0-9]*)?")  # [IPv6 literal][:port]


def has_blank_or_control(text: str) -> bool:
    """True if `text` holds whitespace or a character that does not print (control, format, separator,
    unassigned): exactly `any(c.isspace() or not c.isprintable() for c in text)`, ASCII space being the
    one whitespace that prints, but one pass in C instead of two calls per character in Python (a URL's
    check cost a cached request ~7% of its instructions)."""
    return " " in text or not text.isprintable()


def is_commit_id(ref: str) -> bool:
    """True for a full commit id (SHA-1 or SHA-256), which needs no lookup: it cannot move."""
    return _FULL_SHA.fullmatch(ref) is not None


def http_origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the default port filled in; None for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # not a port number
        return None
    if scheme not in _DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return scheme, parts.hostname.lower(), port


def _is_local(url: str) -> bool:
    # git's own rule (url_is_local_not_ssh): no colon, or a slash before the first colon.
    if url[:1] in ("/", ".", "~") or url.lower().startswith("file:"):
        return True
    colon, slash = url.find(":"), url.find("/")
    return colon < 0 or 0 <= slash < colon


def transport(url: str) -> str:
    """The transport git would use for an already checked URL: http, https, git, ssh or file."""
    m = _SCHEME.match(url)
    if m:
        scheme = m.group(1).lower()
        return _SCHEME_ALIASES.get(scheme, scheme)
    return "file" if _is_local(url) else "ssh"


# The verdict depends on nothing but the arguments, and a cached request checks its URL twice (the spec,
# then the lookup), the same few URLs again and again: ~4% of its instructions (bench/instructions.py).
# Refusals are not kept (lru_cache keeps no exceptions); 256 URLs of at most max_length characters.
@functools.lru_cache(maxsize=256)
def check_git_url(url: str, *, allowed_protocols: frozenset[str], allow_local: bool, max_length: int) -> str:
    """`url` unchanged if it is a repository URL we may contact; RepoNotAllowed/InvalidSpec otherwise."""
    if len(url) > max_length:
        raise InputTooLarge(f"repository URL is longer than {max_length} characters")
    if not url:
        raise InvalidSpec("repository URL is empty")
    if has_blank_or_control(url):
        raise RepoNotAllowed("repository URL must not contain whitespace or control characters")
    if url.startswith("-"):
        raise RepoNotAllowed("repository URL must not start with '-' (it would read as a git option)")
    if _HELPER.match(url):
        raise RepoNotAllowed("git remote-helper URLs ('<transport>::<address>') are not allowed")
    m = _SCHEME.match(url)
    proto = transport(url)
    if proto == "file":
        if not allow_local:
            raise RepoNotAllowed(f"local repositories are not allowed: {redact_url(url)!r}")
        return url
    if proto not in _NETWORK_PROTOCOLS or proto not in allowed_protocols:
        scheme = m.group(1) if m else "ssh"
        raise RepoNotAllowed(f"protocol {scheme!r} is not allowed for repositories")
    if m is None:
        _check_scp_like(url)
    else:
        _check_netloc(url, proto)
    return url


def _check_netloc(url: str, proto: str) -> None:
    try:  # urlsplit refuses unbalanced brackets and hosts NFKC turns into delimiters; .port a bad number
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as e:
        raise InvalidSpec(f"repository URL has an invalid host or port: {redact_url(url)!r}") from e
    if "[" in parts.netloc and not _BRACKETED.fullmatch(parts.netloc.rpartition("@")[2]):
        # "[::1]x" parses, but git and urlsplit would not agree on its host
        raise InvalidSpec(f"repository URL has an invalid host: {redact_url(url)!r}")
    if not host:
        raise InvalidSpec(f"repository URL has no host: {redact_url(url)!r}")
    # ssh would read a host or user starting with "-" as an option (CVE-2017-1000117).
    if host.startswith("-") or (parts.username or "").startswith("-"):
        raise RepoNotAllowed("repository host or user must not start with '-'")
    # A secret in a URL ends up in repo2docker's argv, logs and image labels. ssh's user name is not one.
    if parts.password is not None or (proto != "ssh" and parts.username is not None):
        raise RepoNotAllowed(
            f"repository URLs must not contain credentials ({redact_url(url)!r}); "
            "private repositories use the credentials the operator configured (git_credentials)"
        )
    if proto in ("git", "ssh") and parts.path.strip("/") == "":
        raise InvalidSpec(f"repository URL has no path: {redact_url(url)!r}")


def _check_scp_like(url: str) -> None:
    """`[user@]host:path`, which git treats as ssh."""
    if "[" in url.partition(":")[0]:  # [host:port]:path or user@[host]:path
        close = url.find("]")
        if close < 0 or url[close + 1 : close + 2] != ":":
            raise InvalidSpec(f"repository URL does not parse: {url!r}")
        userhost, path = url[: close + 1], url[close + 2 :]
    else:
        userhost, _, path = url.partition(":")
    user, _, host = userhost.rpartition("@")
    if not host.strip("[]") or not path:
        raise InvalidSpec(f"repository URL has no host or no path: {url!r}")
    if host.lstrip("[").startswith("-") or user.startswith("-"):
        raise RepoNotAllowed("repository host or user must not start with '-'")


def url_host(url: str) -> str | None:
    """The host a repository URL names (any scheme, or scp-like `[user@]host:path`); None for a local path.

    ValueError for a URL whose host part does not parse."""
    if transport(url) == "file":
        return None
    if _SCHEME.match(url):
        return urlsplit(url).hostname
    userhost = url[: url.find("]") + 1] if "[" in url.partition(":")[0] else url.partition(":")[0]
    host = userhost.rpartition("@")[2].strip("[]").partition("%")[0]
    if host.count(":") == 1:  # "[host:port]:path"
        host = host.partition(":")[0]
    return host or None
