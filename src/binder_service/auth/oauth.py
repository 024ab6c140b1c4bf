"""The hub's OAuth flow for browsers: authorization code with state and PKCE, then a service cookie.

A browser without a token is sent to the hub's authorize URL; the hub sends it back to our callback with a
code, which we trade (with the PKCE verifier) for a token kept in an HttpOnly cookie scoped to this
service's path. The state and verifier travel in a short-lived cookie of their own, so any replica can
finish a login another one started.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse

from ..errors import InvalidRequest, Unauthorized
from .hub import HubClient

STATE_MAX_AGE = 600  # seconds a login may take
TOKEN_COOKIE_MAX_AGE = 3600 * 24  # the hub token's own expiry still applies


class LoginRequired(Exception):
    """A browser must log in at the hub first; the edge answers with a redirect to `url`."""

    def __init__(self, url: str, state_cookie: str, state_path: str) -> None:
        super().__init__(url)
        self.url = url
        self.state_cookie = state_cookie
        self.state_path = state_path


class OAuthFlow:
    def __init__(
        self,
        hub: HubClient,
        *,
        client_id: str,
        authorize_url: str,
        callback_url: str,
        base_url: str,
    ) -> None:
        self.hub = hub
        self.client_id = client_id
        self.authorize_url = authorize_url
        self.callback_url = callback_url
        self.base_url = base_url
        self.cookie_name = client_id  # as JupyterHub's own HubOAuth names it
        self.state_cookie_name = f"{client_id}-oauth-state"
        self._callback_path = urlsplit(callback_url).path or callback_url

    def wants_login(self, request: Request) -> bool:
        """A person in a browser (who can follow a redirect to a login page), not an API client."""
        return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")

    def start(self, next_url: str) -> LoginRequired:
        """A login that comes back to `next_url` (only a path under this service; anything else: its root)."""
        # Here, not at import: a service without OAuth (no hub, or tokens only) never loads oauthlib.
        from oauthlib.common import add_params_to_uri
        from oauthlib.oauth2 import WebApplicationClient

        client = WebApplicationClient(self.client_id)
        verifier = client.create_code_verifier(64)
        state = secrets.token_urlsafe(24)
        url = add_params_to_uri(
            self.authorize_url,
            [
                ("client_id", self.client_id),
                ("response_type", "code"),
                ("redirect_uri", self.callback_url),
                ("state", state),
                ("code_challenge", client.create_code_challenge(verifier, "S256")),
                ("code_challenge_method", "S256"),
            ],
        )
        # Unpadded: a "=" would make the cookie value a quoted string.
        target = base64.urlsafe_b64encode(self._local(next_url).encode()).decode().rstrip("=")
        # ":" joins them: PKCE verifiers may hold ".", "~", "-" and "_", never ":".
        return LoginRequired(url, f"{state}:{verifier}:{target}", self._callback_path)

    async def finish(self, request: Request) -> RedirectResponse:
        """The callback: check state, trade the code, set the token cookie, go where the login started."""
        if request.query_params.get("error"):
            raise Unauthorized(f"JupyterHub refused the login: {request.query_params['error'][:100]}")
        code, state = request.query_params.get("code"), request.query_params.get("state")
        kept = request.cookies.get(self.state_cookie_name, "")
        parts = kept.split(":")
        if not code or not state or len(parts) != 3 or not hmac.compare_digest(state, parts[0]):
            raise InvalidRequest("OAuth state mismatch: start the login again")
        _, verifier, target = parts
        try:
            next_url = self._local(base64.urlsafe_b64decode(target + "=" * (-len(target) % 4)).decode())
        except ValueError:
            next_url = self.base_url
        token = await self.hub.token_for_code(
            code=code, client_id=self.client_id, redirect_uri=self.callback_url, code_verifier=verifier
        )
        response = RedirectResponse(next_url, status_code=302)
        response.set_cookie(
            self.cookie_name,
            token,
            max_age=TOKEN_COOKIE_MAX_AGE,
            path=self.base_url,
            httponly=True,
            secure=_is_https(request),
            samesite="lax",
        )
        response.delete_cookie(self.state_cookie_name, path=self._callback_path)
        return response

    def redirect(self, login: LoginRequired, request: Request) -> RedirectResponse:
        response = RedirectResponse(login.url, status_code=302)
        response.set_cookie(
            self.state_cookie_name,
            login.state_cookie,
            max_age=STATE_MAX_AGE,
            path=login.state_path,
            httponly=True,
            secure=_is_https(request),
            samesite="lax",
        )
        return response

    def _local(self, url: str) -> str:
        # Never an open redirect: only a path of this service (no scheme, no host, no "//host").
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not url.startswith(self.base_url) or url.startswith("//"):
            return self.base_url
        return url


def _is_https(request: Request) -> bool:
    # Behind JupyterHub's proxy the original scheme arrives in X-Forwarded-Proto.
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip().lower() == "https"
