"""Does this image already exist? Asked of a registry (distribution v2 API) or of a Docker engine.

A build is skipped when its image is already there, so this is on the hot path of every launch: a
registry lookup with a cached bearer token is one HEAD request. How to speak to a registry (its
auth, image references) is `registry/client.py`'s job, how to speak to an engine `engine/client.py`'s;
this module only asks the question.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

import httpx

from ..errors import RegistryUnavailable
from .docker_config import DockerConfig, RegistryCredentials
from .engine.client import EngineClient
from .naming import registry_host
from .registry.client import MANIFEST_TYPES, RegistryClient, split_image

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["EngineImageStore", "ImageStore", "RegistryImageStore", "image_store_for"]


class ImageStore(Protocol):
    """Where built images live."""

    async def exists(self, image: str) -> bool:
        """True when ``image`` (``host/path:tag``) is there, False when it is not."""
        ...

    async def check(self) -> None:
        """Health probe: raise RegistryUnavailable, EngineUnavailable or UpstreamTimeout when down."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds."""
        ...


class RegistryImageStore:
    """Images in a distribution v2 registry, looked up with HEAD on the manifest.

    Speaks anonymous, Basic and Bearer-token auth (see `RegistryClient`). The HTTP client is
    borrowed, not closed here.
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        credentials: RegistryCredentials | None,
        timeout: float,
    ) -> None:
        self._registry = RegistryClient(url, http, credentials=credentials, timeout=timeout)

    async def exists(self, image: str) -> bool:
        _, repo, ref = split_image(image)
        if self._registry.is_docker_hub and "/" not in repo:
            repo = f"library/{repo}"
        resp = await self._registry.request(
            "HEAD", f"/v2/{repo}/manifests/{ref}", repo=repo, headers={"Accept": MANIFEST_TYPES}
        )
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        if resp.status_code in (401, 403):
            raise self._registry.refused(repo)
        raise RegistryUnavailable(
            f"registry {self._registry.display} answered HTTP {resp.status_code} for {repo}"
        )

    async def check(self) -> None:
        resp = await self._registry.send("GET", f"{self._registry.url}/v2/")
        # 401 is a live registry that wants credentials; those are checked per repository.
        if resp.status_code not in (200, 401):
            raise RegistryUnavailable(
                f"registry {self._registry.display} answered HTTP {resp.status_code} on /v2/"
            )

    async def aclose(self) -> None:
        self._registry.forget_tokens()


class EngineImageStore:
    """Images in a Docker engine (the local build's target when nothing is pushed)."""

    def __init__(self, docker_host: str, *, timeout: float) -> None:
        self._engine = EngineClient(docker_host, timeout=timeout)

    async def exists(self, image: str) -> bool:
        split_image(image)  # a validated name cannot steer the request to another API path
        resp = await self._engine.request("GET", f"/images/{quote(image, safe='/:@')}/json")
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._engine.unexpected(resp)

    async def check(self) -> None:
        resp = await self._engine.request("GET", "/_ping")
        if resp.status_code != 200:
            raise self._engine.unexpected(resp)

    async def aclose(self) -> None:
        await self._engine.aclose()


def image_store_for(settings: Settings, http: httpx.AsyncClient) -> ImageStore:
    """The registry `settings.registry_url` names (with its credentials from the docker config), else
    the local Docker engine."""
    if settings.registry_url:
        config = DockerConfig.load(settings.resolved_docker_config())
        return RegistryImageStore(
            settings.registry_url,
            http,
            credentials=config.credentials_for(registry_host(settings.registry_url)),
            timeout=settings.registry_timeout,
        )
    return EngineImageStore(settings.docker_host, timeout=settings.docker_timeout)
