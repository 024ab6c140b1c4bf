"""Browser login through JupyterHub's OAuth (hub mode only): `/login` starts it, `/oauth_callback` ends it."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from ..auth import Authenticator, OAuthFlow
from ..errors import NotFound

router = APIRouter(tags=["login"], include_in_schema=False)


def _oauth(request: Request) -> OAuthFlow:
    auth: Authenticator = request.app.state.auth
    if auth.oauth is None:
        raise NotFound("logging in needs JupyterHub: this service is not running as a hub service")
    return auth.oauth


@router.get("/login")
async def login(request: Request, next: str = Query("", max_length=2048)) -> RedirectResponse:
    """Send the browser to the hub's login; it comes back to `next` (a path of this service)."""
    oauth = _oauth(request)
    return oauth.redirect(oauth.start(next or oauth.base_url), request)


@router.get("/oauth_callback")
async def oauth_callback(request: Request) -> RedirectResponse:
    return await _oauth(request).finish(request)
