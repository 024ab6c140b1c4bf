"""A small client of the native API, used by `binder-service build`: create a build, follow its events.

Following survives a dropped connection: it reconnects with `Last-Event-ID` and carries on where it was.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

RECONNECTS = 5


class ClientError(Exception):
    """The service answered with an error, or could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class BinderClient:
    url: str  # e.g. http://127.0.0.1:8585/ or https://hub.example.org/services/binder/
    token: str | None = None
    timeout: float = 30.0

    def _client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        # Reads may idle between keepalives; everything else keeps the timeout.
        timeout = httpx.Timeout(self.timeout, read=max(self.timeout, 60.0))
        return httpx.AsyncClient(base_url=self.url.rstrip("/") + "/", headers=headers, timeout=timeout)

    async def create_build(self, repo: str, ref: str, provider: str | None = None) -> dict[str, Any]:
        async with self._client() as client:
            try:
                r = await client.post("api/v1/builds", json={"repo": repo, "ref": ref, "provider": provider})
            except httpx.HTTPError as e:
                raise ClientError("unreachable", f"cannot reach {self.url}: {e}") from e
        return _json_or_raise(r)

    async def events(self, build_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The build's events from `after` on, until `ready` or `failed`, reconnecting when dropped."""
        last, failures = after, 0
        async with self._client() as client:
            while True:
                try:
                    async with client.stream(
                        "GET", f"api/v1/builds/{build_id}/events", headers={"Last-Event-ID": str(last)}
                    ) as r:
                        if r.status_code != 200:
                            await r.aread()
                            _json_or_raise(r)
                        async for event in _parse_sse(r.aiter_lines()):
                            failures = 0
                            last = event["id"]
                            yield event
                            if event["phase"] in ("ready", "failed"):
                                return
                except (httpx.TransportError, httpx.RemoteProtocolError) as e:
                    failures += 1
                    if failures > RECONNECTS:
                        raise ClientError("unreachable", f"lost the event stream: {e}") from e
                    await asyncio.sleep(min(2**failures * 0.25, 5))
                    continue
                # The stream ended without a final event (server restart): ask again from where we were.
                failures += 1
                if failures > RECONNECTS:
                    raise ClientError("stream_ended", "the event stream ended before the build finished")
                await asyncio.sleep(0.5)


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif not line and data:
            event: dict[str, Any] = json.loads("\n".join(data))
            data = []
            yield event


def _json_or_raise(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        body = {"code": "bad_response", "message": r.text[:200]}
    if r.status_code >= 400:
        raise ClientError(str(body.get("code", r.status_code)), str(body.get("message", body)))
    if not isinstance(body, dict):
        raise ClientError("bad_response", "unexpected response from the service")
    return body
