"""What runs a build: the seam between the build registry and repo2docker (local process or pod)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..events import Phase
from ..providers import ResolvedRepo

# (phase, message) -> None; the executor reports progress through it, the manager stamps ids.
Emit = Callable[[Phase, str], None]

# The message the manager cancels running builds with when the service shuts down (not a user's cancel):
# an executor whose build outlives the process (a pod) leaves it running for a restarted replica to attach to.
SHUTDOWN = "binder-service shutdown"


@dataclass(frozen=True, slots=True)
class BuildJob:
    build_id: str
    image_name: str
    repo: ResolvedRepo
    push: bool  # push to the registry (else keep the image in the engine)
    requester: str | None = None  # who asked first (recorded on the build pod)
    layer_cache: bool = False  # export inline cache metadata with the image
    cache_from: str | None = None  # the repository's latest image, whose layers the build may reuse
    log_skip: int = 0  # log lines a restarted service already turned into stored events (a build pod's)
    # Told the pid and log file of a local build's process once it runs (the build store records them, so
    # a restarted service can adopt the build).
    on_process: Callable[[int, str], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class Adoptee:
    """A local build that was running when the service stopped: what the store recorded of its process."""

    pid: int
    log_path: str
    skip: int  # events its log had already produced (stored before the restart): not emitted again


class Executor(Protocol):
    """Runs one build to completion.

    `run` returns when the image is built (and pushed when `job.push`); raises `BuildError` with a readable
    message when it is not; stops the build (kills the process, deletes the pod) when cancelled.
    """

    async def run(self, job: BuildJob, emit: Emit) -> None: ...

    async def check(self) -> None:
        """Raise EngineUnavailable (or similar) when builds cannot run at all."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class AdoptingExecutor(Executor, Protocol):
    """An executor whose builds a restarted service can follow (local processes with a durable log)."""

    async def adopt(self, job: BuildJob, adoptee: Adoptee, emit: Emit) -> None:
        """Follow the build's process from its log to its end, as `run` would (and stop it when cancelled)."""
        ...


@runtime_checkable
class ReattachingExecutor(Executor, Protocol):
    """An executor whose builds outlive the service (build pods): a shutdown leaves them running, and a
    restarted service finds them again and follows them."""

    async def running_builds(self) -> list[BuildJob]:
        """The builds running now (found by their labels), as the jobs that started them."""
        ...
