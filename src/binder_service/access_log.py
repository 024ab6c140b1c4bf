"""The access log: uvicorn's line per request, without credentials a client put in a repository URL.

A BinderHub spec carries the repository URL in the path, URL-escaped (`/build/git/https%3A%2F%2Fuser%3A
token%40host...`): uvicorn's own formatter would write that token to the log, escaped or not. This one
drops the userinfo, in plain, escaped and double-escaped form (security/redaction.py's `redact_path`).
It is also made for the hot path: one f-string, no copy of the record and no colour handling (uvicorn's
AccessFormatter costs ~3x as much per line; bench/profile_cached.py).
"""

from __future__ import annotations

import copy
import http
import logging
from typing import Any

from .security.redaction import redact_path

__all__ = ["AccessFormatter", "log_config"]

_PHRASES = {s.value: s.phrase for s in http.HTTPStatus}


class AccessFormatter(logging.Formatter):
    """`INFO:     <client> - "<method> <path> HTTP/<version>" <status> <phrase>`, as uvicorn writes it."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if not isinstance(args, tuple) or len(args) != 5:  # not uvicorn's access record: as it is
            return super().format(record)
        client, method, path, version, status = args
        code = int(status)  # type: ignore[call-overload]
        prefix = f"{record.levelname}:".ljust(9)
        return (
            f'{prefix} {client} - "{method} {redact_path(str(path))} HTTP/{version}" '
            f"{code} {_PHRASES.get(code, '')}".rstrip()
        )


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with this access formatter."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["access"] = {"()": f"{__name__}.AccessFormatter"}
    return config
