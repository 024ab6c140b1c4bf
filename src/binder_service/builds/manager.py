"""The build registry: at most one build per image, fanned out to every requester, with bounded history."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from itertools import islice
from typing import Any

from ..caching import AsyncCache
from ..errors import BinderError, BuildCancelled, BuildError, BuildNotFound, BuildTimeout, TooManyBuilds
from ..events import BuildEvent, Phase
from ..image_store import ImageStore
from ..metrics import Metrics
from ..providers import ResolvedRepo
from .build import Build, BuildStatus, now
from .executor import SHUTDOWN, BuildJob, Executor
from .layer_cache import LayerCache
from .observe import BuildObserver
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
        layer_cache: LayerCache | None = None,
        after_build: Callable[[], None] | None = None,
    ) -> None:
        self._executor = executor
        self._layers = layer_cache  # None: no inline cache export, no --cache-from
        self._after_build = after_build  # e.g. the engine disk budget's check
        self._cache_sources: dict[str, str] = {}  # by image name: the image a running build reuses
        self._images = images
        self._metrics = metrics
        self._push = push
        self._queue = BuildQueue(max_concurrent)
        self._timeout = build_timeout
        self._history = history
        self._max_events = max_events
        self._builds: OrderedDict[str, Build] = OrderedDict()  # builds that ran, by id, oldest first
        # Answers from an existing image, kept apart so a flood of them never pushes real builds out of
        # the history; one record per (image, requester) is reused while the image is known to exist.
        self._cached: OrderedDict[str, Build] = OrderedDict()
        self._cached_by_image: OrderedDict[tuple[str, str | None], Build] = OrderedDict()
        self._active: dict[str, Build] = {}  # by image name: queued or running
        # "This image exists" is stable; "it does not" changes the moment a build pushes it.
        self._exists: AsyncCache[str, bool] = AsyncCache(ttl=image_cache_ttl)

    @property
    def queue(self) -> BuildQueue:
        return self._queue

    async def image_exists(self, image: str) -> bool:
        return await self._exists.get_or_compute(image, lambda: self._images.exists(image), keep=bool)

    async def request(
        self, repo: ResolvedRepo, image: str, *, requester: str | None = None, max_active: int = 0
    ) -> Build:
        """The build for `image`: the running one, an already-ready one if the image exists, or a new one.

        `max_active` (when > 0) is how many queued or running builds `requester` may have; joining or
        starting one more is refused. An existing image is always answered.
        """
        build = self._active.get(image)
        if build is None:
            exists = await self.image_exists(image)
            build = self._active.get(image)  # another request may have started it while we looked
            if build is None and exists:
                self._metrics.cache_hits.inc()
                build = self._ready(repo, image, requester)
            elif build is None:
                self._check_quota(requester, max_active)
                build = self._start(repo, image, requester)
        elif requester not in build.requesters:
            self._check_quota(requester, max_active)
        build.requests += 1
        if requester is not None:
            build.requesters.add(requester)
        return build

    def active_for(self, requester: str) -> int:
        """Queued or running builds `requester` asked for."""
        return sum(requester in b.requesters for b in self._active.values())

    def _check_quota(self, requester: str | None, max_active: int) -> None:
        if requester is not None and max_active > 0 and self.active_for(requester) >= max_active:
            raise TooManyBuilds(
                f"you already have {max_active} build(s) queued or running; wait for one to finish"
            )

    def _new(self, repo: ResolvedRepo, image: str, requester: str | None, *, cached: bool = False) -> Build:
        build = Build(
            id=secrets.token_hex(8),
            image_name=image,
            repo=repo,
            requester=requester,
            max_events=self._max_events,
            cached=cached,
        )
        history = self._cached if cached else self._builds
        history[build.id] = build
        _trim(history, self._history)
        if repo.note:  # e.g. another branch was used than the one asked for: say so first
            build.emit(Phase.WAITING, f"{repo.note}\n")
        return build

    def _ready(self, repo: ResolvedRepo, image: str, requester: str | None) -> Build:
        key = (image, requester)
        recent = self._cached_by_image.get(key)
        if recent is not None and recent.id in self._cached and self._exists.get(image):
            return recent
        build = self._new(repo, image, requester, cached=True)
        build.emit(Phase.BUILT, "Found built image\n", image_name=image)
        ready = build.emit(Phase.READY, "Done! Found built image\n", image_name=image)
        build.finish(BuildStatus.READY, ready)
        self._cached_by_image[key] = build
        _trim(self._cached_by_image, self._history)
        return build

    def _start(self, repo: ResolvedRepo, image: str, requester: str | None) -> Build:
        build = self._new(repo, image, requester)
        self._active[image] = build
        build.emit(Phase.WAITING, f"Waiting for build to start: {repo.build_slug} at {repo.commit[:12]}\n")
        build.task = asyncio.create_task(self._run(build), name=f"build-{build.id}")
        self._metrics.builds_started.inc()
        return build

    def forget_images(self, images: list[str]) -> None:
        """`images` are gone (pruned from the engine): the next request looks again, and builds."""
        for image in images:
            self._exists.discard(image)

    def images_in_use(self) -> set[str]:
        """Images running builds make or reuse layers of: never pruned from under them."""
        return set(self._active) | set(self._cache_sources.values())

    async def _job(self, build: Build) -> BuildJob:
        cache_from = await self._layers.source(build.image_name) if self._layers else None
        if cache_from:
            self._cache_sources[build.image_name] = cache_from
        return BuildJob(
            build_id=build.id,
            image_name=build.image_name,
            repo=build.repo,
            push=self._push,
            requester=build.requester,
            layer_cache=self._layers is not None,
            cache_from=cache_from,
        )

    async def _run(self, build: Build) -> None:
        observer = BuildObserver(
            self._metrics,
            lambda phase, msg: _log_event(build, phase, msg),
            cache_from=None,
            provider=build.repo.provider,
        )
        status, outcome = BuildStatus.FAILED, "failed"
        try:
            await self._queue.acquire(build)
            try:
                build.status, build.started_at, build.queue_position = BuildStatus.RUNNING, now(), None
                self._metrics.builds_running.inc()
                observer.started()
                try:
                    job = await self._job(build)  # after the queue: the newest image may be new by now
                    observer.cache.cache_from = job.cache_from
                    async with asyncio.timeout(self._timeout):
                        await self._executor.run(job, observer.emit)
                except TimeoutError:
                    raise BuildTimeout(
                        f"build did not finish within {self._timeout:g} seconds; stopped"
                    ) from None
                finally:
                    self._metrics.builds_running.dec()
                    observer.ran()
            finally:
                self._queue.release()
            await self._confirm(build)
            self._exists.put(build.image_name, True)
            if self._layers is not None:
                self._layers.built(build.image_name)
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
            self._cache_sources.pop(build.image_name, None)
            self._metrics.builds_finished.labels(outcome).inc()
            total = None
            if build.started_at and build.finished_at:
                total = (build.finished_at - build.started_at).total_seconds()
                self._metrics.build_seconds.observe(total)
            observer.finish(outcome, total)
            if self._after_build is not None:
                self._after_build()
            log.info(
                "build finished", extra={"build_id": build.id, "image": build.image_name, "phase": outcome}
            )

    async def _confirm(self, build: Build) -> None:
        # repo2docker can exit 0 without an image (e.g. a push that silently went elsewhere): check.
        if not await self._images.exists(build.image_name):
            raise BuildError(f"the build finished but {build.image_name} is not in the image store")

    def get(self, build_id: str) -> Build:
        build = self._builds.get(build_id) or self._cached.get(build_id)
        if build is None:
            raise BuildNotFound(f"no build with id {build_id[:64]!r}")
        return build

    def list(
        self,
        *,
        status: BuildStatus | None = None,
        cached: bool = False,
        limit: int = 100,
        visible: Callable[[set[str]], bool] = lambda _: True,
    ) -> list[Build]:
        """Newest first: builds that ran, and with `cached=True` also answers from existing images.

        `visible` is asked with each build's requesters (the caller's own builds, or all for an admin).
        """
        builds = list(self._builds.values()) + (list(self._cached.values()) if cached else [])
        if cached:
            builds.sort(key=lambda b: b.created_at)
        wanted = (
            b for b in reversed(builds) if (status is None or b.status == status) and visible(b.requesters)
        )
        return list(islice(wanted, limit))

    async def cancel(self, build_id: str) -> Build:
        """Stop a queued or running build; a finished build is returned as it is."""
        build = self.get(build_id)
        if build.task is not None and not build.done:
            build.task.cancel()
            await asyncio.wait([build.task])
        return build

    async def aclose(self) -> None:
        """Stop every running build (service shutdown)."""
        tasks = [b.task for b in self._active.values() if b.task is not None]
        for task in tasks:
            task.cancel(SHUTDOWN)
        if tasks:
            await asyncio.wait(tasks)


def _trim(history: OrderedDict[Any, Build], size: int) -> None:
    """Forget the oldest finished builds beyond `size`; running ones always stay."""
    excess = len(history) - size
    if excess > 0:
        # Oldest first, and finished builds cluster at the front: this stops after `excess` of them.
        for key in list(islice((k for k, b in history.items() if b.done), excess)):
            del history[key]


def _log_event(build: Build, phase: Phase, message: str) -> None:
    build.emit(phase, message)


def _failed(build: Build, error: BinderError) -> BuildEvent:
    return build.emit(Phase.FAILED, error.message.rstrip("\n") + "\n", code=error.code)
