"""The app factory: settings in, a FastAPI app out. Long-lived clients open and close in the lifespan."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI

from . import __version__
from .api import errors as api_errors
from .api import router
from .builds import BuildManager, Executor
from .builds.local import LocalExecutor
from .images import qualified_prefix, registry_host, validate_prefix
from .metrics import Metrics
from .providers import Providers
from .providers.git import GitProvider
from .providers.git_remote import GitRemote
from .registry import DockerConfig, EngineImageStore, ImageStore, RegistryImageStore
from .service import BinderService
from .settings import Settings


def _image_store(settings: Settings, http: httpx.AsyncClient) -> ImageStore:
    if settings.registry_url:
        config = DockerConfig.load(settings.resolved_docker_config())
        return RegistryImageStore(
            settings.registry_url,
            http,
            credentials=config.credentials_for(registry_host(settings.registry_url)),
            timeout=settings.registry_timeout,
        )
    return EngineImageStore(settings.docker_host, timeout=settings.docker_timeout)


def _providers(settings: Settings, http: httpx.AsyncClient) -> Providers:
    protocols = frozenset(settings.allowed_git_protocols)
    remote = GitRemote(
        http,
        timeout=settings.resolve_timeout,
        allowed_protocols=protocols,
        allow_local=settings.allow_local_repos,
        max_url_length=settings.max_input_length,
    )
    git = GitProvider(
        remote,
        allowed_protocols=protocols,
        allow_local=settings.allow_local_repos,
        max_input_length=settings.max_input_length,
        ref_cache_ttl=settings.ref_cache_ttl,
    )
    return Providers([git])


def create_app(
    settings: Settings, *, environ: Mapping[str, str] | None = None, executor: Executor | None = None
) -> FastAPI:
    """Build the app. `environ` is what repo2docker runs with (default: this process's environment)."""
    prefix = qualified_prefix(settings.image_prefix, settings.registry_url)
    validate_prefix(prefix)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # One client for every outgoing HTTP call; each call still sets its own timeout.
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=settings.resolve_timeout, follow_redirects=False)
            )
            images = _image_store(settings, http)
            stack.push_async_callback(images.aclose)
            runner = executor or LocalExecutor(
                docker_host=settings.docker_host,
                docker_config=settings.resolved_docker_config(),
                command=settings.repo2docker_command,
                extra_args=settings.repo2docker_extra_args,
                allowed_git_protocols=settings.allowed_git_protocols,
                allow_local=settings.allow_local_repos,
                environ=os.environ if environ is None else environ,
                docker_timeout=settings.docker_timeout,
            )
            stack.push_async_callback(runner.aclose)
            builds = BuildManager(
                executor=runner,
                images=images,
                metrics=metrics,
                push=bool(settings.registry_url),
                max_concurrent=settings.max_concurrent_builds,
                build_timeout=settings.build_timeout,
                history=settings.build_history,
                max_events=settings.max_events_per_build,
                image_cache_ttl=settings.image_cache_ttl,
            )
            stack.push_async_callback(builds.aclose)
            metrics.track_queue(lambda: builds.queue.waiting)
            app.state.service = BinderService(
                providers=_providers(settings, http), builds=builds, image_prefix=prefix, metrics=metrics
            )
            app.state.health_checks = [
                ("Docker engine", runner.check),
                ("Registry" if settings.registry_url else "Local image store", images.check),
            ]
            yield

    base = settings.base_url
    app = FastAPI(
        title="binder-service",
        version=__version__,
        summary="Repositories become container images: built with repo2docker, streamed live.",
        lifespan=lifespan,
        docs_url=f"{base}docs",
        redoc_url=None,
        openapi_url=f"{base}openapi.json",
    )
    app.state.settings = settings
    app.state.metrics = metrics
    api_errors.install(app)
    app.add_middleware(api_errors.BodyLimit)
    app.include_router(router, prefix=base.rstrip("/"))
    return app
