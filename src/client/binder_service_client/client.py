"""The one async client of binder-service's native API: create a build, follow its events.

Used by the hub's spawner, by `binder-service build` (the CLI) and by the tests, so it depends on httpx and
the standard library alone (never FastAPI, never the service). Following survives a dropped
connection: it reconnects with `Last-Event-ID` and carries on where it was, a bounded number of
times; a finished build with nothing new (204) ends the stream; an unreadable event is a
`BinderServiceError`, never a crash. Every request has a timeout. A fresh token is asked for before
every request (`token` is a callable), so a spawner can hand out short-lived tokens and revoke them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Any

import httpx

from .sse import SSEParser, amessages

__all__ = ["FINAL_PHASES", "BinderServiceError", "BuildClient"]

FINAL_PHASES = frozenset({"ready", "failed"})


class BinderServiceError(Exception):
    """The service answered with an error, could not be reached, or lost the stream for good."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BuildClient:
    """`async with BuildClient(url, token=...) as client:` - one connection pool for one build.

    `url` is the service's base URL, e.g. `http://127.0.0.1:8585/services/binder/` (the internal one,
    not through the proxy).
    """

    def __init__(
        self,
        url: str,
        *,
        token: Callable[[], str] | None = None,
        timeout: float = 30.0,
        read_timeout: float = 120.0,
        reconnects: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/"
        self._token = token
        self._reconnects = reconnects
        # Reads wait for the next event or keepalive (the service sends one every 15 s by default).
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, read=max(timeout, read_timeout)),
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> BuildClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token()}"
        return headers

    async def create_build(self, repo: str, ref: str, provider: str | None = None) -> dict[str, Any]:
        """The build of `repo` at `ref`: new, running, or finished (an existing image)."""
        body: dict[str, str] = {"repo": repo, "ref": ref}
        if provider:
            body["provider"] = provider
        try:
            r = await self._client.post("api/v1/builds", json=body, headers=self._headers())
        except httpx.HTTPError as e:
            raise BinderServiceError("unreachable", f"cannot reach the build service: {_reason(e)}") from e
        return _json_or_raise(r)

    async def events(self, build_id: str, after: int = 0) -> AsyncGenerator[dict[str, Any]]:
        """The build's events after `after`, until `ready` or `failed`, reconnecting when dropped."""
        last, failures = str(after), 0
        path = f"api/v1/builds/{build_id}/events"
        while True:
            try:
                headers = self._headers(Accept="text/event-stream", **{"Last-Event-ID": last})
                async with self._client.stream("GET", path, headers=headers) as r:
                    if r.status_code == 204:  # finished, and nothing after `last`
                        return
                    if r.status_code != 200:
                        await r.aread()
                        _json_or_raise(r)
                    async for message in amessages(r.aiter_lines(), SSEParser()):
                        event = _event(message.data, message.id)
                        if event is None:
                            continue
                        failures, last = 0, message.id or str(event.get("id") or "") or last
                        yield event
                        if event.get("phase") in FINAL_PHASES:
                            return
                reason = "the event stream ended before the build finished"
            except httpx.TransportError as e:
                reason = f"lost the event stream: {_reason(e)}"
            failures += 1
            if failures > self._reconnects:
                raise BinderServiceError("stream_lost", reason)
            await asyncio.sleep(min(0.25 * 2**failures, 5.0))


def _event(data: str, sse_id: str | None) -> dict[str, Any] | None:
    """A message's JSON object, its `id` from the SSE `id:` field when the JSON has none."""
    try:
        event = json.loads(data)
    except ValueError as e:
        raise BinderServiceError("bad_response", "the build service sent an unreadable event") from e
    if not isinstance(event, dict):
        return None  # not a build event; nothing to show
    if "id" not in event and sse_id is not None and sse_id.isdigit():
        event["id"] = int(sse_id)
    return event


def _json_or_raise(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code >= 400:
        if isinstance(body, dict) and "message" in body:
            raise BinderServiceError(str(body.get("code", r.status_code)), str(body["message"]))
        raise BinderServiceError("http_error", f"the build service answered HTTP {r.status_code}")
    if not isinstance(body, dict):
        raise BinderServiceError("bad_response", "the build service sent an unexpected response")
    return body


def _reason(e: httpx.HTTPError) -> str:
    # The exception's text, never the request (its headers carry the token).
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
