"""The app factory: settings in, a FastAPI app out. Long-lived clients open and close in the lifespan."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI

from . import __version__
from .admission import Admission
from .api import errors as api_errors
from .api import openapi as api_openapi
from .api import router
from .api.cors import CrossOrigin
from .auth import authenticator
from .builds import BuildManager, Executor
from .builds.local import LocalExecutor
from .builds.recording import Recorder, owner_id, remove_logs
from .credentials import GitCredentials
from .destinations import DestinationCheck
from .docker_config import DockerConfig
from .egress import EgressPolicy
from .housekeeping import background, collect_registry_forever, engine_disk, layer_cache, registry_images
from .image_admin import ImageAdmin
from .image_store import EngineImageStore, ImageStore, RegistryImageStore
from .images import qualified_prefix, registry_host, validate_prefix
from .metrics import Metrics
from .policy import SpecPolicy
from .providers import Providers, RepoProvider
from .providers.ckan import CKANProvider
from .providers.datasets import DatasetOptions
from .providers.dataverse import DataverseProvider
from .providers.detect import host_of
from .providers.doi import DoiResolver
from .providers.figshare import FigshareProvider
from .providers.gist import GistProvider
from .providers.git.provider import GitProvider
from .providers.git.remote import GitRemote
from .providers.github import GitHubProvider, github_api
from .providers.gitlab import GitLabProvider, gitlab_api
from .providers.http_api import HttpApi, QuotaObserver
from .providers.hydroshare import HydroShareProvider
from .providers.zenodo import ZenodoProvider
from .service import BinderService
from .settings import Settings
from .store import BuildStore
from .store.retention import purge_forever

if TYPE_CHECKING:
    from .builds.kubernetes.executor import KubernetesExecutor


async def _kubernetes_executor(settings: Settings, environ: Mapping[str, str]) -> KubernetesExecutor:
    # Imported here: kubernetes-asyncio is the optional `kubernetes` extra.
    from .builds.kubernetes.setup import kubernetes_executor

    return await kubernetes_executor(settings, environ)


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


def _providers(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    egress: EgressPolicy | None = None,
    credentials: GitCredentials | None = None,
    observe_quota: QuotaObserver | None = None,
    environ: Mapping[str, str] | None = None,
) -> Providers:
    """The enabled providers, in the order of `settings.providers` (which is URL detection's order).

    `http` should be `egress.http_client()`: the providers' HTTP is then checked by the same policy
    that `egress` applies to git:// and ssh.
    """
    protocols = frozenset(settings.allowed_git_protocols)
    max_input = settings.max_input_length
    ref_ttl, missing_ttl = settings.ref_cache_ttl, settings.not_found_cache_ttl
    # One GitHub API client for `gh` and `gist`: they share the token and its rate limit.
    github = github_api(
        http,
        api_url=settings.github_api_url,
        token=settings.github_token,
        timeout=settings.resolve_timeout,
        observe_quota=observe_quota,
    )

    def git() -> RepoProvider:
        remote = GitRemote(
            http,
            timeout=settings.resolve_timeout,
            allowed_protocols=protocols,
            allow_local=settings.allow_local_repos,
            max_url_length=settings.max_input_length,
            egress=egress,
            credentials=credentials,
            environ=environ,
        )
        return GitProvider(
            remote,
            allowed_protocols=protocols,
            allow_local=settings.allow_local_repos,
            max_input_length=max_input,
            ref_cache_ttl=ref_ttl,
        )

    def gitlab() -> RepoProvider:
        api = gitlab_api(
            http,
            url=settings.gitlab_url,
            token=settings.gitlab_token,
            timeout=settings.resolve_timeout,
            observe_quota=observe_quota,
        )
        return GitLabProvider(
            api,
            web_url=settings.gitlab_url,
            max_input_length=max_input,
            ref_cache_ttl=ref_ttl,
            not_found_ttl=missing_ttl,
        )

    makers: dict[str, Callable[[], RepoProvider]] = {
        "gh": lambda: GitHubProvider(
            github,
            web_url=settings.github_url,
            max_input_length=max_input,
            ref_cache_ttl=ref_ttl,
            not_found_ttl=missing_ttl,
        ),
        "gl": gitlab,
        "gist": lambda: GistProvider(
            github,
            web_url=settings.gist_url,
            allow_secret=settings.allow_secret_gists,
            max_input_length=max_input,
            ref_cache_ttl=ref_ttl,
            not_found_ttl=missing_ttl,
        ),
        "git": git,
        **_dataset_makers(settings, http, observe_quota),
    }
    return Providers([makers[name]() for name in settings.providers])


def _dataset_makers(
    settings: Settings, http: httpx.AsyncClient, observe_quota: QuotaObserver | None
) -> dict[str, Callable[[], RepoProvider]]:
    """Makers of the dataset providers (docs/providers.md); all their HTTP goes through `http`."""
    timeout = settings.resolve_timeout
    common: DatasetOptions = {
        "max_input_length": settings.max_input_length,
        "ref_cache_ttl": settings.ref_cache_ttl,
        "not_found_ttl": settings.not_found_cache_ttl,
    }
    doi = DoiResolver(
        http, base_url=settings.doi_resolver_url, timeout=timeout, cache_ttl=settings.doi_cache_ttl
    )

    def api(name: str, base_url: str) -> HttpApi:
        return HttpApi(http, name=name, base_url=base_url, timeout=timeout, observe_quota=observe_quota)

    return {
        "zenodo": lambda: ZenodoProvider(
            {u: api(f"Zenodo API at {host_of(u)}", u + "/api") for u in settings.zenodo_urls},
            doi,
            doi_prefixes=settings.zenodo_doi_prefixes,
            **common,
        ),
        "figshare": lambda: FigshareProvider(
            api("Figshare API", settings.figshare_api_url), doi, web_url=settings.figshare_url, **common
        ),
        "hydroshare": lambda: HydroShareProvider(
            api("HydroShare API", settings.hydroshare_url + "/hsapi"),
            web_url=settings.hydroshare_url,
            **common,
        ),
        "dataverse": lambda: DataverseProvider(
            {u: api(f"Dataverse API at {host_of(u)}", u + "/api") for u in settings.dataverse_installations},
            doi,
            doi_prefixes=settings.dataverse_doi_prefixes,
            **common,
        ),
        "ckan": lambda: CKANProvider(http, hosts=settings.ckan_hosts, timeout=timeout, **common),
    }


async def _wake_on_stop(stopping: asyncio.Event, builds: BuildManager) -> None:
    await stopping.wait()
    builds.wake_all()


def create_app(
    settings: Settings, *, environ: Mapping[str, str] | None = None, executor: Executor | None = None
) -> FastAPI:
    """Build the app. `environ` is what repo2docker runs with (default: this process's environment)."""
    prefix = qualified_prefix(settings.image_prefix, settings.registry_url)
    validate_prefix(prefix)
    if settings.docker_config is not None and not settings.docker_config.is_file():
        raise ValueError(f"docker config {settings.docker_config} does not exist")
    metrics = Metrics()
    credentials = GitCredentials.from_config(
        settings.git_credentials,
        github_url=settings.github_url,
        github_token=settings.github_token,
        gitlab_url=settings.gitlab_url,
        gitlab_token=settings.gitlab_token,
    )  # ValueError (without the secret) for a malformed entry
    egress = EgressPolicy(
        allow_private=settings.allow_private_networks, allowed_networks=settings.allowed_networks
    )
    policy = SpecPolicy(
        banned=settings.banned_specs,
        banned_message=settings.banned_specs_message,
        allowed=settings.allowed_specs,
        spec_config=settings.spec_config,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            # The registry's client: operator-configured, so outside the egress policy.
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=settings.resolve_timeout, follow_redirects=False)
            )
            # Repository hosts are named by users: every connection (and redirect hop) is checked.
            fetch = await stack.enter_async_context(egress.http_client(timeout=settings.resolve_timeout))
            images = _image_store(settings, http)
            stack.push_async_callback(images.aclose)
            # The build store: opened (and migrated) first, closed last, after the builds' last events.
            store = await BuildStore.open(settings.resolved_db_url(), op_timeout=settings.db_timeout)
            stack.push_async_callback(store.aclose)
            recorder = Recorder(store, owner=owner_id(settings))
            chosen, kube = executor, None
            if chosen is None and settings.executor == "kubernetes":
                chosen = kube = await _kubernetes_executor(
                    settings, os.environ if environ is None else environ
                )
            runner = chosen or LocalExecutor(
                docker_host=settings.docker_host,
                docker_config=settings.resolved_docker_config(),
                command=settings.repo2docker_command,
                extra_args=settings.repo2docker_extra_args,
                allowed_git_protocols=settings.allowed_git_protocols,
                allow_local=settings.allow_local_repos,
                environ=os.environ if environ is None else environ,
                docker_timeout=settings.docker_timeout,
                git_credentials=credentials,
                state_dir=settings.resolved_state_dir(),
            )
            stack.push_async_callback(runner.aclose)
            disk = engine_disk(
                settings,
                metrics,
                lambda: builds.images_in_use(),
                lambda gone: builds.forget_images(gone),
            )
            if disk is not None:
                stack.push_async_callback(disk.aclose)
            app.state.admission = Admission(
                requests_per_minute=settings.max_requests_per_minute,
                builds_per_user=settings.max_builds_per_user,
                store=store,
                owner=recorder.owner,
                shared=store.dialect == "postgresql",  # replicas share it: count what they all do
                build_timeout=settings.build_timeout,
                policy=policy,
            )
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
                admission=app.state.admission,
            )
            stack.push_async_callback(builds.aclose)
            await builds.adopt()  # what was running when the service last stopped (docs/state.md)
            if settings.build_retention_seconds > 0:
                purge = purge_forever(store, settings.build_retention_seconds, on_purged=remove_logs)
                await background(stack, "build-retention", purge)
            app.state.image_admin = ImageAdmin(
                store.engine, registry_images(settings, http), forget=builds.forget_images
            )
            if disk is not None:
                await background(stack, "engine-disk", disk.run_forever(settings.engine_prune_interval))
            if settings.registry_gc_interval > 0 and settings.registry_retention and settings.registry_url:
                gc = collect_registry_forever(settings, metrics, lambda gone: builds.forget_images(gone))
                await background(stack, "registry-gc", gc)
            if kube is not None:  # a restarted replica follows the build pods that are still running
                from .builds.kubernetes.setup import adopt_running_builds

                await adopt_running_builds(kube, builds)
            metrics.track_queue(lambda: builds.queue.waiting)
            # JupyterHub is operator-configured: its own client, outside the providers' egress policy.
            hub_http = await stack.enter_async_context(httpx.AsyncClient(timeout=settings.hub_timeout))
            app.state.auth = authenticator(settings, hub_http)
            providers = _providers(
                settings,
                fetch,
                egress=egress,
                credentials=credentials,
                observe_quota=metrics.observe_ratelimit,
                environ=os.environ if environ is None else environ,
            )
            app.state.service = BinderService(
                providers=providers,
                builds=builds,
                image_prefix=prefix,
                metrics=metrics,
                policy=policy,
                destinations=DestinationCheck(egress, timeout=settings.resolve_timeout),
            )
            app.state.health_checks = [
                ("Kubernetes API" if settings.executor == "kubernetes" else "Docker engine", runner.check),
                ("Registry" if settings.registry_url else "Local image store", images.check),
            ]
            # Set by the server's protocol when a graceful stop begins (server.py); every request sees it in
            # `scope["state"]`, so open streams say their last word before the connections close.
            stopping = asyncio.Event()
            await background(stack, "stop-notice", _wake_on_stop(stopping, builds))
            yield {"stopping": stopping}

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
    api_openapi.install(app, max_input_length=settings.max_input_length)
    app.add_middleware(api_errors.BodyLimit)
    # Outermost: refusals (413, 405, ...) carry CORS headers too; cross-origin cookies never get in.
    app.add_middleware(CrossOrigin, allow_origins=settings.cors_allow_origins)
    app.include_router(router, prefix=base.rstrip("/"))
    return app
