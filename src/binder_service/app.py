"""The app factory: settings in, a FastAPI app out. Long-lived clients open and close in the lifespan."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
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
from .providers import Providers, RepoProvider
from .providers.gist import GistProvider
from .providers.git import GitProvider
from .providers.git_remote import GitRemote
from .providers.github import GitHubProvider, github_api
from .providers.gitlab import GitLabProvider, gitlab_api
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
    """The enabled providers, in the order of `settings.providers` (which is URL detection's order)."""
    protocols = frozenset(settings.allowed_git_protocols)
    max_input = settings.max_input_length
    ref_ttl, missing_ttl = settings.ref_cache_ttl, settings.not_found_cache_ttl
    # One GitHub API client for `gh` and `gist`: they share the token and its rate limit.
    github = github_api(
        http, api_url=settings.github_api_url, token=settings.github_token, timeout=settings.resolve_timeout
    )

    def git() -> RepoProvider:
        remote = GitRemote(
            http,
            timeout=settings.resolve_timeout,
            allowed_protocols=protocols,
            allow_local=settings.allow_local_repos,
            max_url_length=settings.max_input_length,
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
            http, url=settings.gitlab_url, token=settings.gitlab_token, timeout=settings.resolve_timeout
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
    }
    return Providers([makers[name]() for name in settings.providers])


def create_app(
    settings: Settings, *, environ: Mapping[str, str] | None = None, executor: Executor | None = None
) -> FastAPI:
    """Build the app. `environ` is what repo2docker runs with (default: this process's environment)."""
    prefix = qualified_prefix(settings.image_prefix, settings.registry_url)
    validate_prefix(prefix)
    if settings.docker_config is not None and not settings.docker_config.is_file():
        raise ValueError(f"docker config {settings.docker_config} does not exist")
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
