"""A build's task: a slot in the queue, the executor's run to the image, and every way it can end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from ..errors import BinderError, BuildCancelled, BuildError, BuildTimeout
from ..events import BuildEvent, Phase
from ..images.layer_cache import LayerCache
from ..metrics import Metrics
from .active import ActiveBuilds
from .build import Build, BuildStatus, now
from .executor import SHUTDOWN, Adoptee, AdoptingExecutor, BuildJob, Executor, ReattachingExecutor
from .known_images import KnownImages
from .observe import BuildObserver
from .queue import BuildQueue
from .recording import Recorder, remaining

log = logging.getLogger(__name__)


@dataclass
class BuildRunner:
    """Runs builds as tasks of their own: each waits for a slot, runs on the executor within its deadline,
    checks its image, and ends `ready`, `failed` or `cancelled` with a last event, giving its places back."""

    executor: Executor
    known: KnownImages
    metrics: Metrics
    queue: BuildQueue
    active: ActiveBuilds
    push: bool
    timeout: float
    layers: LayerCache | None = None  # None: no inline cache export, no --cache-from
    recorder: Recorder | None = None
    after_build: Callable[[], None] | None = None  # e.g. the engine disk budget's check
    # Build pods left running at a shutdown: their records stay running for the restarted service.
    left: set[str] = field(default_factory=set)

    @property
    def outlives_service(self) -> bool:
        """This executor's builds outlive the service and are found again after a restart (build pods);
        a shutdown stops local processes."""
        return isinstance(self.executor, ReattachingExecutor)

    def launch(self, build: Build, adopted: Adoptee | None = None, *, log_skip: int = 0) -> None:
        """Start `build`'s task (`adopted`: follow a process a previous owner left running; `log_skip`:
        log lines of a build pod already turned into stored events)."""
        build.task = asyncio.create_task(self._run(build, adopted, log_skip), name=f"build-{build.id}")
        # Also when the task is cancelled before it ever ran (its `finally` never runs then).
        build.task.add_done_callback(lambda _: self._ended(build))

    def _ended(self, build: Build) -> None:
        """A build's task is over (idempotent)."""
        if not build.done and build.id not in self.left:  # cancelled before it started
            build.finish(BuildStatus.CANCELLED, failed(build, BuildCancelled("build cancelled")))
        self.active.ended(build)

    async def _run(self, build: Build, adopted: Adoptee | None, log_skip: int) -> None:
        observer = BuildObserver(
            self.metrics,
            lambda phase, msg: _log_event(build, phase, msg),
            cache_from=None,
            provider=build.repo.provider,
        )
        status, outcome = BuildStatus.FAILED, "failed"
        try:
            if adopted is None:
                await self.queue.acquire(build)
            else:
                self.queue.take()  # it is running already: it holds a slot, over the limit if need be
            try:
                if adopted is None:
                    build.status, build.started_at, build.queue_position = BuildStatus.RUNNING, now(), None
                    build.deadline = build.started_at + timedelta(seconds=self.timeout)
                    if self.recorder is not None:
                        self.recorder.changed(build)
                self.metrics.builds_running.inc()
                observer.started()
                try:
                    # After the queue: the newest image may be new by now.
                    job = await self._job(build, log_skip)
                    observer.cache.cache_from = job.cache_from
                    # An adopted build keeps the deadline it had when it started.
                    async with asyncio.timeout(remaining(build.deadline, self.timeout)):
                        if adopted is None:
                            await self.executor.run(job, observer.emit)
                        else:
                            assert isinstance(self.executor, AdoptingExecutor)
                            await self.executor.adopt(job, adopted, observer.emit)
                except TimeoutError:
                    raise BuildTimeout(
                        f"build did not finish within {self.timeout:g} seconds; stopped"
                    ) from None
                finally:
                    self.metrics.builds_running.dec()
                    observer.ran()
            finally:
                self.queue.release()
            # repo2docker can exit 0 without an image (e.g. a push that silently went elsewhere): check.
            if not await self.known.confirmed(build.image_name):
                raise BuildError(f"the build finished but {build.image_name} is not in the image store")
            self.known.put(build.image_name)
            if self.layers is not None:
                self.layers.built(build.image_name)
            if self.recorder is not None:
                self.recorder.image(build, built=True)
            build.emit(Phase.BUILT, "Built image\n", image_name=build.image_name)
            ready = build.emit(Phase.READY, "Done! Built image\n", image_name=build.image_name)
            status, outcome = BuildStatus.READY, "ready"
            build.finish(status, ready)
        except asyncio.CancelledError as e:
            if SHUTDOWN in e.args and build.status is BuildStatus.RUNNING and self.outlives_service:
                # Its pod goes on: the record stays running for the restarted service to take up.
                self.left.add(build.id)
                outcome = "shutdown"
            else:
                status, outcome = BuildStatus.CANCELLED, "cancelled"
                build.finish(status, failed(build, BuildCancelled("build cancelled")))
            # The task is ours and finishes here; the cancel was the request, not an error to propagate.
        except BinderError as e:
            outcome = "timeout" if isinstance(e, BuildTimeout) else "failed"
            build.finish(status, failed(build, e))
        except Exception:
            log.exception("build crashed", extra={"build_id": build.id, "image": build.image_name})
            build.finish(
                status, failed(build, BuildError("internal error while building; see the service log"))
            )
        finally:
            self._ended(build)
            self.metrics.builds_finished.labels(outcome).inc()
            total = None
            if build.started_at and build.finished_at:
                total = (build.finished_at - build.started_at).total_seconds()
                self.metrics.build_seconds.observe(total)
            observer.finish(outcome, total)
            if self.after_build is not None:
                self.after_build()
            log.info(
                "build finished", extra={"build_id": build.id, "image": build.image_name, "phase": outcome}
            )

    async def _job(self, build: Build, log_skip: int) -> BuildJob:
        cache_from = await self.layers.source(build.image_name) if self.layers else None
        if cache_from:
            self.active.reuses(build.image_name, cache_from)
        return BuildJob(
            build_id=build.id,
            image_name=build.image_name,
            repo=build.repo,
            push=self.push,
            requester=build.requester,
            layer_cache=self.layers is not None,
            cache_from=cache_from,
            log_skip=log_skip,
            on_process=lambda pid, log_path: self._process_started(build, pid, log_path),
        )

    async def _process_started(self, build: Build, pid: int, log_path: str) -> None:
        """Record a local build's process before following it: a restarted service adopts it from there."""
        build.pid, build.log_path, build.log_event_base = pid, log_path, build.last_event_id
        if self.recorder is None:
            return
        self.recorder.changed(build)
        try:
            async with asyncio.timeout(self.recorder.store.timeout):
                await self.recorder.store.flush()
        except TimeoutError:
            log.warning(
                "build store: the build's process is not recorded yet; a restart now could not adopt it",
                extra={"build_id": build.id, "pid": pid},
            )


def _log_event(build: Build, phase: Phase, message: str) -> None:
    build.emit(phase, message)


def failed(build: Build, error: BinderError) -> BuildEvent:
    """`build`'s `failed` event for `error` (its code and message)."""
    return build.emit(Phase.FAILED, error.message.rstrip("\n") + "\n", code=error.code)
