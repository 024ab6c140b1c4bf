"""The executor chosen by Settings: repo2docker as a local process, or a build pod per image on Kubernetes."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .executor import Executor
from .local import LocalExecutor

if TYPE_CHECKING:
    from ..credentials import GitCredentials
    from ..settings import Settings
    from .manager import BuildManager

__all__ = ["adopt_running", "engine_check_name", "make_executor"]

_KUBERNETES = "binder_service.builds.kubernetes.executor"


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
    )


def engine_check_name(settings: Settings) -> str:
    """What `/health` calls the executor's check."""
    return "Kubernetes API" if settings.executor == "kubernetes" else "Docker engine"


async def adopt_running(executor: Executor, builds: BuildManager) -> None:
    """Follow what was running when the service last stopped (docs/state.md): local builds from the
    build store; on Kubernetes, also the build pods found by their labels (a restarted replica)."""
    await builds.adopt()
    kubernetes = sys.modules.get(_KUBERNETES)  # not imported: no executor can be a Kubernetes one
    if kubernetes is not None and isinstance(executor, kubernetes.KubernetesExecutor):
        from .kubernetes.setup import adopt_running_builds

        await adopt_running_builds(executor, builds)
