"""The one client of a Docker engine's API: the image store's lookups and the disk budget's df and prunes.

`DOCKER_HOST` is a unix socket (`unix:///path/docker.sock`, one pool over it) or plain TCP
(`tcp://host:port`; TLS, DOCKER_TLS_VERIFY, is not supported). Transport errors are translated here,
once: a timeout is `UpstreamTimeout`, anything else that keeps the engine from answering is
`EngineUnavailable`, each naming the engine. What an answer means is the caller's to say.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from ...errors import EngineUnavailable, UpstreamTimeout

__all__ = ["API", "EngineClient"]

API = "/v1.41"  # dockerd 20.10 and later; paths without it get the engine's own version


class EngineClient:
    """Requests to the engine `docker_host` names, each bounded by `timeout` seconds."""

    def __init__(self, docker_host: str, *, timeout: float) -> None:
        parts = urlsplit(docker_host)
        transport: httpx.AsyncHTTPTransport | None = None
        if parts.scheme == "unix" and parts.path:
            transport, base = httpx.AsyncHTTPTransport(uds=parts.path), "http://docker"
        elif parts.scheme in ("tcp", "http") and parts.netloc:
            base = f"http://{parts.netloc}"
        else:
            raise ValueError("DOCKER_HOST must be unix:///path/docker.sock or tcp://host:port")
        self.host = docker_host
        self.timeout = timeout
        self._http = httpx.AsyncClient(base_url=base, transport=transport, timeout=timeout)

    async def request(
        self, method: str, path: str, *, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """The engine's answer, whatever its status; UpstreamTimeout or EngineUnavailable when none came."""
        try:
            return await self._http.request(method, path, params=params)
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(
                f"Docker engine at {self.host} did not answer within {self.timeout:g}s"
            ) from e
        except httpx.HTTPError as e:
            raise EngineUnavailable(f"Docker engine at {self.host} is not reachable") from e

    def unexpected(self, resp: httpx.Response, doing: str = "") -> EngineUnavailable:
        """The error for an answer the caller cannot use (`doing`: " to df", ...)."""
        return EngineUnavailable(f"Docker engine at {self.host} answered HTTP {resp.status_code}{doing}")

    async def aclose(self) -> None:
        await self._http.aclose()
