"""Credentials kept out of everything we show: URLs and text from servers and subprocesses.

No I/O here. Messages, logs, build events and pod annotations pass a URL through `redact_url` and a
server's or a child's text through `scrub`, so that a secret in a URL or in an answer never travels
further.
"""

from __future__ import annotations

import re

__all__ = ["redact_path", "redact_url", "scrub"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")

# In a request path: `scheme://` or its escaped forms, the userinfo (no `/ ? # @` in any form), `@`.
_E = r"%(?:25)*+"  # one `%`, escaped any number of times (possessive: `%252F` is one escaped `/`)
_USERINFO_IN_PATH = re.compile(
    rf"(?i)(://|{_E}3A{_E}2F{_E}2F)(?:[^/?#@%\s]|{_E}(?!2F|3F|23|40)[0-9A-F]{{2}})*(?:@|{_E}40)"
)


def redact_url(url: str) -> str:
    """`url` without `user:password@`, safe for messages, logs and annotations."""
    m = _SCHEME.match(url)
    if not m:
        return url  # scp-like "user@host:path": the ssh user name is not a secret
    rest = url[m.end() :]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    return url if at < 0 else m.group(0) + rest[at + 1 :]


def scrub(text: str, limit: int = 300) -> str:
    """Text from a server or a subprocess made safe for a message: no credentials in URLs, printable,
    one line, at most `limit` characters."""
    text = _USERINFO_IN_TEXT.sub(r"\1", text)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text[:limit] + ("…" if len(text) > limit else "")


def redact_path(path: str) -> str:
    """A request target without the userinfo of any URL in it."""
    return _USERINFO_IN_PATH.sub(r"\1", path) if ("@" in path or "40" in path) else path
