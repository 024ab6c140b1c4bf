"""The composition root: settings in, a FastAPI app out.

Every part is made in the room of what it is (`make_providers`, `make_executor`, `image_store_for`,
`keep_house`, ...); this module only wires them. The settings arrive checked: their validators hold the
safety rules. Long-lived clients open and close in the lifespan.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from . import __version__
from .admission import Admission
from .api import ROUTERS
from .api import errors as api_errors
from .api import openapi as api_openapi
from .api.cors import CrossOrigin
from .auth import authenticator
from .builds import BuildManager, Executor
from .builds.executors import engine_check_name, make_executor
from .builds.recording import Recorder, owner_id
from .housekeeping import background, engine_disk, keep_house, layer_cache, registry_images
from .images.admin import ImageAdmin
from .images.engine.disk import EngineDisk
from .images.naming import qualified_prefix
from .images.store import ImageStore, image_store_for
from .metrics import Metrics
from .policy import SpecPolicy
from .providers.registry import make_providers
from .security.credentials import GitCredentials
from .security.destinations import DestinationCheck
from .security.egress import EgressPolicy
from .service import BinderService
from .settings import Settings
from .store import BuildStore
from .store.ownership import claim, lock_files


def create_app(
    settings: Settings, *, environ: Mapping[str, str] | None = None, executor: Executor | None = None
) -> FastAPI:
    """Build the app. `environ` is what repo2docker, git and the Kubernetes client run with (default: the
    environment `settings` were read from); `executor` replaces the one `settings.executor` names."""
    parts = _Parts(settings, settings.environ if environ is None else environ, executor)
    app = FastAPI(
        title="binder-service",
        version=__version__,
        summary="Repositories become container images: built with repo2docker, streamed live.",
        lifespan=lambda app: _lifespan(app, parts),
        docs_url=f"{settings.base_url}docs",
        redoc_url=None,
        openapi_url=f"{settings.base_url}openapi.json",
    )
    app.state.settings = settings
    app.state.metrics = parts.metrics
    api_errors.install(app)
    api_openapi.install(app, max_input_length=settings.max_input_length)
    app.add_middleware(api_errors.BodyLimit)
    # Outermost: refusals (413, 405, ...) carry CORS headers too; cross-origin cookies never get in.
    app.add_middleware(CrossOrigin, allow_origins=settings.cors_allow_origins)
    for router in ROUTERS:
        app.include_router(router, prefix=settings.base_url.rstrip("/"))
    return app


@dataclass
class _Parts:
    """What is made before the app starts (so a bad value fails `create_app`, not the first request)."""

    settings: Settings
    environ: Mapping[str, str]
    executor: Executor | None

    def __post_init__(self) -> None:
        s = self.settings
        self.metrics = Metrics()
        self.credentials = GitCredentials.from_config(
            s.git_credentials,
            github_url=s.github_url,
            github_token=s.github_token,
            gitlab_url=s.gitlab_url,
            gitlab_token=s.gitlab_token,
        )  # ValueError (without the secret) for a malformed entry
        self.egress = EgressPolicy(
            allow_private=s.allow_private_networks, allowed_networks=s.allowed_networks
        )
        self.policy = SpecPolicy(
            banned=s.banned_specs,
            banned_message=s.banned_specs_message,
            allowed=s.allowed_specs,
            spec_config=s.spec_config,
        )


@asynccontextmanager
async def _lifespan(app: FastAPI, parts: _Parts) -> AsyncIterator[dict[str, Any]]:
    settings, metrics = parts.settings, parts.metrics
    async with AsyncExitStack() as stack:
        # One TLS context (httpx's default: the CA bundle loaded once, not once per client: ~0.8 MB each).
        tls = httpx.create_ssl_context()
        # The registry's client: operator-configured, so outside the egress policy.
        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=settings.resolve_timeout, follow_redirects=False, verify=tls)
        )
        # Repository hosts are named by users: every connection (and redirect hop) is checked.
        fetch = await stack.enter_async_context(
            parts.egress.http_client(timeout=settings.resolve_timeout, verify=tls)
        )
        # JupyterHub is operator-configured: its own client, outside the providers' egress policy.
        hub_http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=settings.hub_timeout, verify=tls)
        )
        images = image_store_for(settings, http)
        stack.push_async_callback(images.aclose)
        # One owner per store (store/ownership.py): `serve` claimed it already; an app started otherwise
        # claims it here. Refused (StoreHeld) when another running service owns it.
        owner = claim(
            lock_files(settings.resolved_state_dir(), settings.resolved_db_url()),
            address=f"http://{settings.host}:{settings.port}{settings.base_url}",
        )
        stack.callback(owner.release)
        # The build store: opened (and migrated) first, closed last, after the builds' last events.
        store = await BuildStore.open(settings.resolved_db_url(), op_timeout=settings.db_timeout)
        stack.push_async_callback(store.aclose)
        runner = parts.executor or await make_executor(
            settings, environ=parts.environ, credentials=parts.credentials
        )
        stack.push_async_callback(runner.aclose)
        builds, app.state.admission, disk = await _builds(stack, parts, runner, images, store, http)
        app.state.image_admin = ImageAdmin(
            store.db, registry_images(settings, http), forget=builds.forget_images
        )
        app.state.auth = authenticator(settings, hub_http)
        providers = make_providers(
            settings,
            fetch,
            egress=parts.egress,
            credentials=parts.credentials,
            observe_quota=metrics.observe_ratelimit,
            environ=parts.environ,
        )
        app.state.service = BinderService(
            providers=providers,
            builds=builds,
            image_prefix=qualified_prefix(settings.image_prefix, settings.registry_url),
            metrics=metrics,
            settings=settings,
            policy=parts.policy,
            destinations=DestinationCheck(parts.egress, timeout=settings.resolve_timeout),
        )
        app.state.health_checks = [
            (engine_check_name(settings), runner.check),
            ("Registry" if settings.registry_url else "Local image store", images.check),
        ]
        # Set by the server's protocol when a graceful stop begins (server.py); every request sees it in
        # `scope["state"]`, so open streams say their last word before the connections close.
        stopping = asyncio.Event()
        await background(stack, "stop-notice", _wake_on_stop(stopping, builds))
        # Last, once nothing else can fail: what the previous owner left running, and housekeeping. A
        # service that cannot start never takes up (and then stops) a build it does not own.
        await builds.adopt()  # local builds from the store, build pods by their labels
        await keep_house(stack, settings, metrics, builds, store, disk)
        yield {"stopping": stopping}


async def _builds(
    stack: AsyncExitStack,
    parts: _Parts,
    runner: Executor,
    images: ImageStore,
    store: BuildStore,
    http: httpx.AsyncClient,
) -> tuple[BuildManager, Admission, EngineDisk | None]:
    """The build manager, its admission and the engine's disk budget (None: no budget)."""
    settings, metrics = parts.settings, parts.metrics
    recorder = Recorder(store, owner=owner_id(settings))
    disk = engine_disk(
        settings, metrics, lambda: builds.images_in_use(), lambda gone: builds.forget_images(gone)
    )
    if disk is not None:
        stack.push_async_callback(disk.aclose)
    admission = Admission(
        requests_per_minute=settings.max_requests_per_minute,
        builds_per_user=settings.max_builds_per_user,
        store=store,
        owner=recorder.owner,
        shared=store.dialect == "postgresql",  # replicas share it: count what they all do
        policy=parts.policy,
        lease_seconds=settings.build_lease,
    )
    stack.push_async_callback(admission.aclose)  # before the store closes: its places are given back
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
        layer_cache=layer_cache(settings, http),
        after_build=disk.schedule if disk is not None else None,
        recorder=recorder,
        lease_seconds=settings.build_lease,
        admission=admission,
    )
    stack.push_async_callback(builds.aclose)
    metrics.track_queue(lambda: builds.queue.waiting)
    return builds, admission, disk


async def _wake_on_stop(stopping: asyncio.Event, builds: BuildManager) -> None:
    await stopping.wait()
    builds.wake_all()
