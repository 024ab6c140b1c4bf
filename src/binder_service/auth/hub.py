"""JupyterHub as the source of users: a token is identified by asking the hub, with a short, bounded cache."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import httpx

from ..caching import AsyncCache
from ..errors import HubUnavailable, Unauthorized
from .identity import Identity, Kind

log = logging.getLogger(__name__)


class HubClient:
    """The hub API as this service uses it: `GET /user` for a token, `POST /oauth2/token` for a code."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_url: str,
        api_token: str,
        build_scopes: frozenset[str],
        admin_scopes: frozenset[str],
        cache_ttl: float,
        timeout: float,
        cache_size: int = 10_000,
    ) -> None:
        self._http = http
        self.api_url = api_url.rstrip("/")
        self._api_token = api_token
        self._build_scopes = build_scopes
        self._admin_scopes = admin_scopes
        self._timeout = timeout
        # Keyed by a hash of the token: the cache never holds a usable token. A miss is cached too
        # (as None), so a flood of bad tokens asks the hub once per token.
        self._cache: AsyncCache[str, tuple[Identity | None]] = AsyncCache(ttl=cache_ttl, max_size=cache_size)

    async def identify(self, token: str) -> Identity | None:
        """The identity behind `token`, or None when the hub does not know it (invalid, expired, revoked)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        (identity,) = await self._cache.get_or_compute(key, lambda: self._lookup(token))
        return identity

    def forget(self, token: str) -> None:
        self._cache.discard(hashlib.sha256(token.encode()).hexdigest())

    async def _lookup(self, token: str) -> tuple[Identity | None]:
        reply = await self._request("GET", "/user", headers={"Authorization": f"token {token}"})
        if reply.status_code in (401, 403):
            return (None,)
        model = _json(reply)
        return (self._identity(model),)

    def _identity(self, model: dict[str, Any]) -> Identity:
        name = model.get("name")
        if not isinstance(name, str) or not name:
            raise HubUnavailable("JupyterHub answered without a user or service name")
        scopes = {s for s in model.get("scopes") or [] if isinstance(s, str)}
        kind: Kind = "service" if model.get("kind") == "service" else "user"
        admin = bool(scopes & self._admin_scopes)
        return Identity(
            name=name, kind=kind, admin=admin, can_build=admin or bool(scopes & self._build_scopes)
        )

    async def token_for_code(
        self, *, code: str, client_id: str, redirect_uri: str, code_verifier: str
    ) -> str:
        """Finish an OAuth login: the authorization code (plus the PKCE verifier) for an access token."""
        form = {
            "client_id": client_id,
            "client_secret": self._api_token,  # a hub service's OAuth client secret is its API token
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        reply = await self._request("POST", "/oauth2/token", data=form)
        if reply.status_code in (400, 401, 403):
            raise Unauthorized("JupyterHub did not accept the login; please try again")
        token = _json(reply).get("access_token")
        if not isinstance(token, str) or not token:
            raise HubUnavailable("JupyterHub answered the login without an access token")
        return token

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self._api_token}", **kwargs.pop("headers", {})}
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._http.request(
                    method, self.api_url + path, headers=headers, timeout=self._timeout, **kwargs
                )
        except (TimeoutError, httpx.TimeoutException) as e:
            raise HubUnavailable(f"JupyterHub did not answer within {self._timeout:g}s") from e
        except httpx.HTTPError as e:
            raise HubUnavailable(f"cannot reach JupyterHub: {type(e).__name__}") from e
        if reply.status_code >= 500:
            log.warning("hub API error", extra={"status": reply.status_code, "path": path})
            raise HubUnavailable(f"JupyterHub answered {reply.status_code}")
        return reply


def _json(reply: httpx.Response) -> dict[str, Any]:
    try:
        data = reply.json()
    except ValueError:
        data = None
    if reply.status_code >= 400 or not isinstance(data, dict):
        raise HubUnavailable(f"JupyterHub answered {reply.status_code} with no usable JSON")
    return data
