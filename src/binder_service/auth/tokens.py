"""Reading a token from a request, and the standalone mode's static tokens."""

from __future__ import annotations

import hmac
import re

from pydantic import SecretStr
from starlette.requests import Request

from .identity import Identity

# JupyterHub's own pattern: "token <t>" or "bearer <t>", any case.
_AUTH_HEADER = re.compile(r"(?:token|bearer)\s+(\S+)\s*", re.IGNORECASE)


def header_token(request: Request) -> str | None:
    """The token in `Authorization: token|Bearer <t>`. Never the query string: it would reach access logs."""
    match = _AUTH_HEADER.fullmatch(request.headers.get("authorization", ""))
    return match.group(1) if match else None


class StaticTokens:
    """Operator-issued tokens (`BINDER_SERVICE_API_TOKENS`); each may do everything."""

    def __init__(self, tokens: list[SecretStr]) -> None:
        self._tokens = [t.get_secret_value().encode() for t in tokens if t.get_secret_value()]

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def identify(self, token: str) -> Identity | None:
        given = token.encode()
        found = None
        for index, allowed in enumerate(self._tokens):
            # Compare with every token: the time taken says nothing about which one matched.
            if hmac.compare_digest(given, allowed) and found is None:
                found = Identity(name=f"token-{index}", kind="token", admin=True)
        return found
