"""The build registry: at most one build per image, fanned out to every requester, with bounded history."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from itertools import islice

from ..caching import AsyncCache
from ..errors import BinderError, BuildCancelled, BuildError, BuildNotFound, BuildTimeout
from ..events import BuildEvent, Phase
from ..metrics import Metrics
from ..providers import ResolvedRepo
from ..registry import ImageStore
from .build import Build, BuildStatus, now
from .executor import BuildJob, Executor
from .queue import BuildQueue

log = logging.getLogger(__name__)


class BuildManager:
    """Starts builds, deduplicates them by image name, and keeps the recent ones for reading and replay."""

    def __init__(
        self,
        *,
        executor: Executor,
        images: ImageStore,
        metrics: Metrics,
        push: bool,
        max_concurrent: int,
        build_timeout: float,
        history: int,
        max_events: int,
        image_cache_ttl: float,
    ) -> None:
        self._executor = executor
        self._images = images
        self._metrics = metrics
        self._push = push
        self._queue = BuildQueue(max_concurrent)
        self._timeout = build_timeout
        self._history = history
        self._max_events = max_events
        self._builds: OrderedDict[str, Build] = OrderedDict()  # by id, oldest first
        self._active: dict[str, Build] = {}  # by image name: queued or running
        # "This image exists" is stable; "it does not" changes the moment a build pushes it.
        self._exists: AsyncCache[str, bool] = AsyncCache(ttl=image_cache_ttl)

    @property
    def queue(self) -> BuildQueue:
        return self._queue

    async def image_exists(self, image: str) -> bool:
        return await self._exists.get_or_compute(image, lambda: self._images.exists(image), keep=bool)

    async def request(self, repo: ResolvedRepo, image: str, *, requester: str | None = None) -> Build:
        """The build for `image`: the running one, an already-ready one if the image exists, or a new one."""
        build = self._active.get(image)
        if build is None:
            exists = await self.image_exists(image)
            build = self._active.get(image)  # another request may have started it while we looked
            if build is None and exists:
                self._metrics.cache_hits.inc()
                build = self._ready(repo, image, requester)
            elif build is None:
                build = self._start(repo, image, requester)
        build.requests += 1
        return build

    def _new(self, repo: ResolvedRepo, image: str, requester: str | None) -> Build:
        build = Build(
            id=secrets.token_hex(8),
            image_name=image,
            repo=repo,
            requester=requester,
            max_events=self._max_events,
        )
        self._builds[build.id] = build
        self._trim()
        return build

    def _ready(self, repo: ResolvedRepo, image: str, requester: str | None) -> Build:
        build = self._new(repo, image, requester)
        build.cached = True
        build.emit(Phase.BUILT, "Found built image\n", image_name=image)
        build.finish(
            BuildStatus.READY, build.emit(Phase.READY, "Done! Found built image\n", image_name=image)
        )
        return build

    def _start(self, repo: ResolvedRepo, image: str, requester: str | None) -> Build:
        build = self._new(repo, image, requester)
        self._active[image] = build
        build.emit(Phase.WAITING, f"Waiting for build to start: {repo.build_slug} at {repo.commit[:12]}\n")
        build.task = asyncio.create_task(self._run(build), name=f"build-{build.id}")
        self._metrics.builds_started.inc()
        return build

    async def _run(self, build: Build) -> None:
        job = BuildJob(build_id=build.id, image_name=build.image_name, repo=build.repo, push=self._push)
        status, outcome = BuildStatus.FAILED, "failed"
        try:
            await self._queue.acquire(build)
            try:
                build.status, build.started_at, build.queue_position = BuildStatus.RUNNING, now(), None
                self._metrics.builds_running.inc()
                try:
                    async with asyncio.timeout(self._timeout):
                        await self._executor.run(job, lambda phase, msg: _log_event(build, phase, msg))
                except TimeoutError:
                    raise BuildTimeout(
                        f"build did not finish within {self._timeout:g} seconds; stopped"
                    ) from None
                finally:
                    self._metrics.builds_running.dec()
            finally:
                self._queue.release()
            await self._confirm(build)
            self._exists.put(build.image_name, True)
            build.emit(Phase.BUILT, "Built image\n", image_name=build.image_name)
            ready = build.emit(Phase.READY, "Done! Built image\n", image_name=build.image_name)
            status, outcome = BuildStatus.READY, "ready"
            build.finish(status, ready)
        except asyncio.CancelledError:
            status, outcome = BuildStatus.CANCELLED, "cancelled"
            build.finish(status, _failed(build, BuildCancelled("build cancelled")))
            # The task is ours and finishes here; the cancel was the request, not an error to propagate.
        except BinderError as e:
            outcome = "timeout" if isinstance(e, BuildTimeout) else "failed"
            build.finish(status, _failed(build, e))
        except Exception:
            log.exception("build crashed", extra={"build_id": build.id, "image": build.image_name})
            build.finish(
                status, _failed(build, BuildError("internal error while building; see the service log"))
            )
        finally:
            self._active.pop(build.image_name, None)
            self._metrics.builds_finished.labels(outcome).inc()
            if build.started_at and build.finished_at:
                self._metrics.build_seconds.observe((build.finished_at - build.started_at).total_seconds())
            log.info(
                "build finished", extra={"build_id": build.id, "image": build.image_name, "phase": outcome}
            )

    async def _confirm(self, build: Build) -> None:
        # repo2docker can exit 0 without an image (e.g. a push that silently went elsewhere): check.
        if not await self._images.exists(build.image_name):
            raise BuildError(f"the build finished but {build.image_name} is not in the image store")

    def get(self, build_id: str) -> Build:
        try:
            return self._builds[build_id]
        except KeyError:
            raise BuildNotFound(f"no build with id {build_id[:64]!r}") from None

    def list(self, *, status: BuildStatus | None = None, limit: int = 100) -> list[Build]:
        """Newest first."""
        builds = (b for b in reversed(self._builds.values()) if status is None or b.status == status)
        return [b for _, b in zip(range(limit), builds, strict=False)]

    async def cancel(self, build_id: str) -> Build:
        """Stop a queued or running build; a finished build is returned as it is."""
        build = self.get(build_id)
        if build.task is not None and not build.done:
            build.task.cancel()
            await asyncio.wait([build.task])
        return build

    def _trim(self) -> None:
        """Forget the oldest finished builds beyond the history size; running ones always stay."""
        excess = len(self._builds) - self._history
        if excess <= 0:
            return
        # Oldest first, and finished builds cluster at the front: this stops after `excess` of them.
        for build_id in list(islice((i for i, b in self._builds.items() if b.done), excess)):
            del self._builds[build_id]

    async def aclose(self) -> None:
        """Stop every running build (service shutdown)."""
        tasks = [b.task for b in self._active.values() if b.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _log_event(build: Build, phase: Phase, message: str) -> None:
    build.emit(phase, message)


def _failed(build: Build, error: BinderError) -> BuildEvent:
    return build.emit(Phase.FAILED, error.message.rstrip("\n") + "\n", code=error.code)
