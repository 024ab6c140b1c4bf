"""The executor chosen by Settings: repo2docker as a local process, or a build pod per image on Kubernetes."""

from __future__ import annotations

import contextlib
import logging
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .buildah_local import BuildahStorage
from .cgroups import BuildCgroups, Limits
from .executor import Executor
from .local import LocalExecutor

if TYPE_CHECKING:
    from ..security.credentials import GitCredentials
    from ..settings import Settings

__all__ = ["build_cgroups", "build_limits", "engine_check_name", "make_executor"]

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
        cgroups=build_cgroups(settings),
    )


def _engine_config(settings: Settings) -> str:
    """repo2docker config lines for the build engine: its build user, or per-step limits."""
    if settings.build_user:
        # RUN steps in a chroot, no cgroup of their own: the build's cgroup alone holds the limits.
        return f"c.BuildahEngine.run_as = {settings.build_user!r}\n"
    if not (settings.build_memory_limit or settings.build_cpu_limit):
        return ""
    if settings.engine == "docker":
        log.warning(
            "build_memory_limit and build_cpu_limit do not bind builds with engine 'docker': RUN steps run "
            "in the Docker daemon, outside the build's process (use engine 'buildah')"
        )
        return ""
    # As root each RUN step runs under runc, in a cgroup of its own below the build's: the same limits
    # there too, a second line that costs nothing. They hold where the engine runs without the build's
    # cgroup (an adopted build whose cgroup was gone), and a step killed there is named in the reason.
    lines = []
    if settings.amounts.build_memory_limit_bytes is not None:
        lines.append(f"c.BuildahEngine.memory_limit = {settings.amounts.build_memory_limit_bytes}\n")
    if settings.build_cpu_limit:
        lines.append(f"c.BuildahEngine.cpu_limit = {settings.build_cpu_limit!r}\n")
    return "".join(lines)


def build_limits(settings: Settings) -> Limits | None:
    """The per-build limits a local buildah build's cgroup holds; None when there are none."""
    memory = settings.amounts.build_memory_limit_bytes
    if settings.engine != "buildah" or not (memory or settings.build_cpu_limit):
        return None
    return Limits(memory=memory, cpus=settings.build_cpu_limit)


def build_cgroups(settings: Settings) -> BuildCgroups | None:
    """Where `settings`' local buildah builds get their cgroups; None without limits."""
    limits = build_limits(settings)
    if limits is None:
        return None
    # Settings refused the limits already where no cgroup can be made (cgroups.unavailable_reason).
    return BuildCgroups.here(limits, key=str(settings.resolved_state_dir()))


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
