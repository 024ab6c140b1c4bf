"""Caches and disks, assembled from Settings for the app's lifespan: the layer cache builds import
from, the engine disk budget, and the background tasks that keep them (docs/cache-and-disk.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import httpx

from .builds.recording import remove_logs
from .errors import BinderError
from .images.docker_config import DockerConfig
from .images.engine.disk import EngineDisk
from .images.layer_cache import LayerCache
from .images.naming import qualified_prefix, registry_host
from .images.registry.catalogue import RegistryImages
from .images.registry.client import RegistryClient
from .images.registry.gc import GcReport, RegistryGC, SqlImageRecords
from .metrics import Metrics
from .settings import Settings
from .store.retention import purge_forever

if TYPE_CHECKING:
    from .builds import BuildManager
    from .store import BuildStore

log = logging.getLogger(__name__)


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
    settings: Settings,
    metrics: Metrics | None,
    in_use: Callable[[], set[str]],
    on_removed: Callable[[list[str]], None] = lambda _: None,
) -> EngineDisk | None:
    """The local engine's disk budget; None when unset or when builds run elsewhere (on Kubernetes the
    chart's docker-api pods run `binder-service prune-engine` next to each engine)."""
    budget = settings.amounts.engine_disk_budget_bytes
    if budget is None or settings.executor != "local" or settings.engine != "docker":
        return None  # buildah's storage: builds/buildah_local.py
    return EngineDisk(
        settings.docker_host,
        budget=budget,
        pinned=settings.engine_pinned_images,
        in_use=in_use,
        on_removed=on_removed,
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


async def collect_registry(
    settings: Settings, *, dry_run: bool = False, metrics: Metrics | None = None
) -> GcReport:
    """One registry garbage collection, against the build store `settings` name (opened for it)."""
    from .store import BuildStore

    retention = settings.amounts.registry_retention_seconds
    if not settings.registry_url or retention is None:
        raise ValueError("registry garbage collection needs registry_url and registry_retention")
    store = await BuildStore.open(settings.resolved_db_url(), op_timeout=settings.db_timeout)
    try:
        async with httpx.AsyncClient(timeout=settings.registry_timeout, follow_redirects=False) as http:
            registry = registry_images(settings, http)
            assert registry is not None
            collector = RegistryGC(
                SqlImageRecords(store.db),
                registry,
                prefix=qualified_prefix(settings.image_prefix, settings.registry_url),
                retention=retention,
                metrics=metrics,
            )
            return await collector.collect(dry_run=dry_run)
    finally:
        await store.aclose()


async def collect_registry_forever(
    settings: Settings, metrics: Metrics, on_deleted: Callable[[list[str]], None] = lambda _: None
) -> None:
    """`collect_registry` every `registry_gc_interval` seconds; failures are logged and retried.
    `on_deleted` hears what went (the manager's cache of existing images forgets it)."""
    while True:
        await asyncio.sleep(settings.registry_gc_interval)
        try:
            report = await collect_registry(settings, metrics=metrics)
            on_deleted(report.deleted)
        except BinderError as e:
            log.warning("registry gc failed", extra={"error": e.message})
        except RuntimeError as e:  # the build store could not be opened
            log.warning("registry gc failed", extra={"error": str(e)[:300]})


async def keep_house(
    stack: AsyncExitStack,
    settings: Settings,
    metrics: Metrics,
    builds: BuildManager,
    store: BuildStore,
    disk: EngineDisk | None,
) -> None:
    """Start the background tasks `settings` ask for (each stopped by `stack`): the build history's
    retention, the engine's disk budget and the registry's garbage collection."""
    if settings.amounts.build_retention_seconds > 0:
        purge = purge_forever(store, settings.amounts.build_retention_seconds, on_purged=remove_logs)
        await background(stack, "build-retention", purge)
    if disk is not None:
        await background(stack, "engine-disk", disk.run_forever(settings.engine_prune_interval))
    if settings.registry_gc_interval > 0 and settings.registry_retention and settings.registry_url:
        await background(
            stack, "registry-gc", collect_registry_forever(settings, metrics, builds.forget_images)
        )
