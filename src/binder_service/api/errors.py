"""The one place errors become HTTP responses: JSON `{"code", "message"}`, never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import Authenticator, LoginRequired
from ..errors import BinderError
from ..events import sse_message
from .sse import complete_stream, failed_payload

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024  # no legitimate request body comes close


BINDERHUB_ROUTE = "binderhub_build"  # the route whose refusals an event-stream client gets as an event


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _wants_event(request: Request) -> bool:
    """A BinderHub-face request from an SSE client: BinderHub's JS client shows a non-200 answer as
    "Failed to connect to event stream: 403 - function text() ...", without reading its body."""
    route = request.scope.get("route")
    accept = request.headers.get("accept", "")
    return getattr(route, "name", None) == BINDERHUB_ROUTE and "text/event-stream" in accept.lower()


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path: Starlette's 405 names only the first route's."""
    routes: list[BaseRoute] = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]
    return ", ".join(allowed)


def install(app: FastAPI) -> None:
    @app.exception_handler(BinderError)
    async def _binder(request: Request, exc: BinderError) -> Response:
        if _wants_event(request):
            # A refusal before the handler ran (401, 403, 429, 503 from the auth dependencies): as the
            # handler's own errors, one `failed` event with status 200; `status_code` says the HTTP status.
            return complete_stream([sse_message({**failed_payload(exc), "status_code": exc.status})])
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        auth: Authenticator = request.app.state.auth
        assert auth.oauth is not None  # only the OAuth flow raises it
        return auth.oauth.redirect(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})  # e.g. 405's Allow
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return _error(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return _error(500, "internal_error", "internal error; see the service log")


class BodyLimit:
    """Refuse request bodies over MAX_BODY with 413: by Content-Length, or while a chunked body streams."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await _too_large(scope, receive, send)
            return
        if length is None and b"transfer-encoding" not in headers:
            # No body (HTTP/1.1 has one only with either header): nothing to count, nothing to wrap.
            await self.app(scope, receive, send)
            return
        seen = 0
        refused = False

        async def limited() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY and not refused:
                # Answer now and tell the app the client left: whatever it does next is dropped.
                refused = True
                await _too_large(scope, receive, send)
            return {"type": "http.disconnect"} if refused else message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, guarded)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    await _error(413, "input_too_large", f"request body over {MAX_BODY} bytes")(scope, receive, send)
