"""Caches and disks, assembled from Settings for the app's lifespan: the layer cache builds import
from, the engine disk budget, and the background tasks that keep them (docs/cache-and-disk.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import httpx

from .builds.engine_disk import EngineDisk, parse_size
from .builds.layer_cache import LayerCache
from .docker_config import DockerConfig
from .images import registry_host
from .metrics import Metrics
from .registry import RegistryClient
from .registry_images import RegistryImages
from .settings import Settings


def registry_images(settings: Settings, http: httpx.AsyncClient) -> RegistryImages | None:
    """The registry the service pushes to, for tags, manifests and deletes; None without one."""
    if not settings.registry_url:
        return None
    config = DockerConfig.load(settings.resolved_docker_config())
    client = RegistryClient(
        settings.registry_url,
        http,
        credentials=config.credentials_for(registry_host(settings.registry_url)),
        timeout=settings.registry_timeout,
    )
    return RegistryImages(client)


def layer_cache(settings: Settings, http: httpx.AsyncClient) -> LayerCache | None:
    """None when the layer cache is off; without a registry, builds still export inline cache."""
    if not settings.layer_cache:
        return None
    return LayerCache(registry_images(settings, http))


def engine_disk(
    settings: Settings, metrics: Metrics | None, in_use: Callable[[], set[str]]
) -> EngineDisk | None:
    """The local engine's disk budget; None when unset or when builds run elsewhere (on Kubernetes the
    chart's docker-api pods run `binder-service prune-engine` next to each engine)."""
    if not settings.engine_disk_budget or settings.executor != "local":
        return None
    return EngineDisk(
        settings.docker_host,
        budget=parse_size(settings.engine_disk_budget),
        pinned=settings.engine_pinned_images,
        in_use=in_use,
        timeout=max(settings.docker_timeout, 30.0),  # df and prunes take longer than a lookup
        metrics=metrics,
    )


async def background(stack: AsyncExitStack, name: str, work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until the stack closes (the app shuts down)."""
    task = asyncio.create_task(work, name=name)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
