"""The executor chosen by Settings: repo2docker as a local process, or a build pod per image on Kubernetes."""

from __future__ import annotations

import contextlib
import logging
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .buildah_local import BuildahStorage
from .executor import Executor
from .local import LocalExecutor

if TYPE_CHECKING:
    from ..security.credentials import GitCredentials
    from ..settings import Settings

__all__ = ["engine_check_name", "make_executor"]

log = logging.getLogger(__name__)


async def make_executor(
    settings: Settings, *, environ: Mapping[str, str], credentials: GitCredentials | None = None
) -> Executor:
    """The executor `settings.executor` names. `environ` is what repo2docker runs with (filtered) and, on
    Kubernetes, where the client finds its cluster (`KUBERNETES_SERVICE_HOST` in a pod, else `KUBECONFIG`)."""
    if settings.executor == "kubernetes":
        # Imported here: kubernetes-asyncio is the optional `kubernetes` extra.
        from .kubernetes.setup import kubernetes_executor

        return await kubernetes_executor(settings, environ)
    return LocalExecutor(
        docker_host=settings.docker_host,
        docker_config=settings.resolved_docker_config(),
        command=settings.repo2docker_command,
        extra_args=settings.repo2docker_extra_args,
        allowed_git_protocols=settings.allowed_git_protocols,
        allow_local=settings.allow_local_repos,
        environ=environ,
        docker_timeout=settings.docker_timeout,
        git_credentials=credentials,
        state_dir=settings.resolved_state_dir(),
        buildah=_buildah_storage(settings, environ) if settings.engine == "buildah" else None,
        engine_config=_engine_config(settings),
    )


def _engine_config(settings: Settings) -> str:
    """repo2docker config lines for the build engine: the per-build limits (buildah's RUN steps)."""
    if settings.build_user:
        return f"c.BuildahEngine.run_as = {settings.build_user!r}\n"  # (no limits with one: Settings)
    if not (settings.build_memory_limit or settings.build_cpu_limit):
        return ""
    if settings.engine == "docker":
        log.warning(
            "build_memory_limit and build_cpu_limit do not bind builds with engine 'docker': RUN steps run "
            "in the Docker daemon, outside the build's process (use engine 'buildah')"
        )
        return ""
    lines = []
    if settings.amounts.build_memory_limit_bytes is not None:
        lines.append(f"c.BuildahEngine.memory_limit = {settings.amounts.build_memory_limit_bytes}\n")
    if settings.build_cpu_limit:
        lines.append(f"c.BuildahEngine.cpu_limit = {settings.build_cpu_limit!r}\n")
    return "".join(lines)


def _buildah_storage(settings: Settings, environ: Mapping[str, str]) -> BuildahStorage:
    return BuildahStorage(
        _buildah_root(settings),
        environ=environ,
        registry_url=settings.registry_url,
        docker_config=settings.resolved_docker_config(),
        disk_budget=settings.amounts.engine_disk_budget_bytes,
        build_user=settings.build_user,
    )


def _buildah_root(settings: Settings) -> Path:
    """Under the state directory; a build user's storage in its home (it must reach it, and the state
    directory is the service's own)."""
    if settings.build_user:
        with contextlib.suppress(KeyError):  # no such user: the health check says so
            return Path(pwd.getpwnam(settings.build_user).pw_dir) / "binder-service-buildah"
    return settings.resolved_state_dir() / "buildah"


def engine_check_name(settings: Settings) -> str:
    """What `/health` calls the executor's check."""
    if settings.executor == "kubernetes":
        return "Kubernetes API"
    return "buildah" if settings.engine == "buildah" else "Docker engine"
