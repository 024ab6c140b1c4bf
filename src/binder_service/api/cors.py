"""Cross-origin requests: CORS for the configured origins, and never a cookie from another origin.

Pages of an allowed origin may call both API faces with a token in `Authorization` (BinderHub's
`cors_allow_origin`). Cookies are a different matter: a browser attaches the service's cookie to
requests that any site makes, so a request whose `Origin` is not this service's own loses its cookies
before the app sees it, whether or not CORS is configured; and no response ever allows credentials.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CrossOrigin"]

ALLOWED_METHODS = ("GET", "POST")
# Beyond the safelisted ones (Accept, Content-Type, ...): the token, and what SSE clients send.
ALLOWED_HEADERS = ("Authorization", "Last-Event-ID", "Cache-Control")


class _Cors(CORSMiddleware):
    """Starlette's CORS, refusing a preflight with the service's JSON error and no CORS headers."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        why = bytes(response.body).decode("ascii", "replace").removeprefix("Disallowed CORS ")
        return JSONResponse(
            {"code": "invalid_request", "message": f"CORS preflight refused: {why} not allowed"},
            status_code=400,
            headers={"Vary": "Origin"},
        )


def _cross_origin(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    origin = headers.get("origin")
    if origin is None:  # same-origin GETs and navigations send none
        return False
    try:
        return urlsplit(origin).netloc.lower() != headers.get("host", "").lower()
    except ValueError:
        return True


class CrossOrigin:
    """Drops the cookies of cross-origin requests; adds CORS headers for `allow_origins` (empty: none)."""

    def __init__(self, app: ASGIApp, *, allow_origins: list[str]) -> None:
        self.app: ASGIApp = (
            _Cors(
                app,
                allow_origins=allow_origins,
                allow_methods=ALLOWED_METHODS,
                allow_headers=ALLOWED_HEADERS,
                allow_credentials=False,
            )
            if allow_origins
            else app
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _cross_origin(scope):
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"cookie"]}
        await self.app(scope, receive, send)
