"""Who may use the service: static tokens (standalone), JupyterHub tokens and OAuth cookies (hub mode)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from starlette.requests import Request

from ..errors import Forbidden, Unauthorized
from ..settings import Settings
from .hub import HubClient
from .identity import ANONYMOUS, Identity
from .limits import RequestRate
from .oauth import LoginRequired, OAuthFlow
from .tokens import StaticTokens, header_token

__all__ = [
    "ANONYMOUS",
    "Authenticator",
    "HubClient",
    "Identity",
    "LoginRequired",
    "OAuthFlow",
    "RequestRate",
    "StaticTokens",
    "authenticator",
]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Authenticator:
    """Turns a request into an Identity, or refuses it (401 / 403 / a redirect to the hub's login).

    With neither static tokens nor a hub, the service is open (it then only listens on loopback).
    """

    def __init__(self, *, static: StaticTokens, hub: HubClient | None, oauth: OAuthFlow | None) -> None:
        self.static = static
        self.hub = hub
        self.oauth = oauth

    @property
    def open(self) -> bool:
        return not self.static and self.hub is None

    async def identify(self, request: Request) -> Identity:
        if self.open:
            return ANONYMOUS
        token, from_cookie = header_token(request), False
        if token is None and self.oauth is not None:
            token = request.cookies.get(self.oauth.cookie_name) or None
            from_cookie = token is not None
        if token is None:
            if self.oauth is not None and self.oauth.wants_login(request):
                raise self.oauth.start(
                    str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
                )
            raise Unauthorized("this service needs a token: Authorization: token <token> (or Bearer)")
        identity = self.static.identify(token) if self.static else None
        if identity is None and self.hub is not None:
            identity = await self.hub.identify(token)
        if identity is None:
            if from_cookie and self.oauth is not None and self.oauth.wants_login(request):
                raise self.oauth.start(str(request.url.path))  # the cookie's token expired: log in again
            raise Unauthorized("invalid or expired token")
        if from_cookie and request.method not in _SAFE_METHODS and not _same_origin(request):
            raise Forbidden("cross-site request refused")
        if not identity.can_build:
            raise Forbidden("this token does not have a scope that allows using this service")
        return identity


def _same_origin(request: Request) -> bool:
    # A cookie rides along on requests other sites make; a state-changing one must come from our origin.
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    return urlsplit(origin).netloc == request.headers.get("host", "")


def authenticator(settings: Settings, http: httpx.AsyncClient) -> Authenticator:
    """The authenticator `settings` describe; `http` is the client for JupyterHub's API."""
    static = StaticTokens(settings.api_tokens)
    if not settings.hub_enabled:
        return Authenticator(static=static, hub=None, oauth=None)
    assert settings.hub_api_token is not None
    hub = HubClient(
        http,
        api_url=settings.hub_api_url,
        api_token=settings.hub_api_token.get_secret_value(),
        build_scopes=settings.effective_build_scopes(),
        admin_scopes=frozenset(settings.hub_admin_scopes),
        cache_ttl=settings.hub_auth_cache_ttl,
        timeout=settings.hub_timeout,
    )
    hub_base = "/" + settings.hub_base_url.strip("/") + "/" if settings.hub_base_url.strip("/") else "/"
    oauth = OAuthFlow(
        hub,
        client_id=settings.hub_client_id or f"service-{settings.hub_service_name}",
        authorize_url=f"{settings.hub_host.rstrip('/')}{hub_base}hub/api/oauth2/authorize",
        callback_url=settings.hub_oauth_callback_url or f"{settings.base_url}oauth_callback",
        base_url=settings.base_url,
    )
    return Authenticator(static=static, hub=hub, oauth=oauth)
