"""The front door of builds: a request gets the one build of its image (running, found, or new), a build
can be cancelled, and all stop with the service. Behind it: `active` (what runs now), `history` (what
ran), `known_images`, `running` (a build's task), `joining` (replicas), `reattach` (a dead owner's builds).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from ..admission import Admission, Ticket
from ..auth import Identity
from ..errors import BuildNotFound
from ..events import Phase
from ..images.layer_cache import LayerCache
from ..images.store import ImageStore
from ..metrics import Metrics
from ..providers import ResolvedRepo
from .active import ActiveBuilds
from .build import Build, BuildStatus
from .executor import SHUTDOWN, AdoptingExecutor, Executor, ReattachingExecutor
from .history import BuildHistory
from .joining import Joining
from .known_images import KnownImages
from .queue import BuildQueue
from .reattach import Reattachment, follow_pods
from .recording import Recorder
from .replicas import Leases
from .running import BuildRunner

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
        recorder: Recorder | None = None,
        lease_seconds: float = 30.0,
        admission: Admission | None = None,
    ) -> None:
        self.recorder = recorder  # None: memory only (no build store)
        self._metrics = metrics
        self._max_events = max_events
        # Asked when a build is started or joined; None: no per-user or per-repository limits.
        self._admission = admission or Admission(requests_per_minute=0, builds_per_user=0)
        # Replicas sharing a store (PostgreSQL) with local builds: one build per image among them all,
        # the others join it (builds/joining.py). A build pod is shared through the Kubernetes API instead.
        shared = recorder is not None and recorder.store.dialect == "postgresql"
        leases = (
            Leases(recorder.store, owner=recorder.owner, ttl=lease_seconds, on_cancel=self._cancel_asked)
            if recorder is not None and shared and isinstance(executor, AdoptingExecutor)
            else None
        )
        self._leases = leases
        self.known = KnownImages(images, ttl=image_cache_ttl)
        self.active = ActiveBuilds(self._admission, leases)
        self.history = BuildHistory(size=history, max_events=max_events, recorder=recorder)
        self.queue = BuildQueue(max_concurrent)
        self._runner = BuildRunner(
            executor=executor,
            known=self.known,
            metrics=metrics,
            queue=self.queue,
            active=self.active,
            push=push,
            timeout=build_timeout,
            layers=layer_cache,
            recorder=recorder,
            after_build=after_build,
        )
        self._joining = (
            Joining(
                leases=leases,
                recorder=recorder,
                admission=self._admission,
                active=self.active,
                history=self.history,
                known=self.known,
                build_timeout=build_timeout,
                max_events=max_events,
                start=self._start,
            )
            if leases is not None and recorder is not None
            else None
        )
        self._reattach = (
            Reattachment(
                recorder=recorder,
                runner=self._runner,
                active=self.active,
                history=self.history,
                admission=self._admission,
                metrics=metrics,
                max_events=max_events,
                leases=leases,
            )
            if recorder is not None
            else None
        )

    async def request(
        self,
        repo: ResolvedRepo,
        image: str,
        *,
        user: Identity | None = None,
        spec_key: str | None = None,
    ) -> Build:
        """The build for `image`: the running one, an already-ready one if the image exists, or a new one.

        Starting a build, or joining one `user` did not ask for yet, is admitted first (their build
        limit, the quota of the rule `spec_key` falls under). An existing image is always answered.
        """
        requester = user.name if user is not None else None
        build = self.active.get(image)
        if build is None:
            exists = await self.known.exists(image)
            build = self.active.get(image)  # another request may have started it while we looked
            if build is None and exists:
                self._metrics.cache_hits.inc()
                build = self._ready(repo, image, requester)
            elif build is None:
                admitted = await self._admission.admit(user, spec_key=spec_key, image=image)
                build = self.active.get(image)  # started while admission asked the shared store
                if build is None and self._joining is not None:
                    build = await self._joining.start_or_join(repo, image, requester, spec_key, admitted)
                elif build is None:
                    build = self._start(repo, image, requester, spec_key, admitted)
                else:
                    self._admission.release(admitted)
        await self.active.join(build, user)
        return self._requested(build, requester)

    def follow_running(
        self, repo: ResolvedRepo, image: str, requester: str | None, build_id: str = ""
    ) -> Build:
        """A build that runs already, outside this process (a restarted replica's build pod): followed
        without admission (it was admitted when it started), holding its places again. A build this
        service recorded (`build_id`, from the pod) goes on with its id and stored events."""
        build = self.active.get(image)
        resumed = self._reattach.follow_pod(image, build_id) if self._reattach is not None else None
        if build is None:
            hold = self._admission.hold
            build = resumed or self._start(
                repo, image, requester, None, hold(users=[requester] if requester else [])
            )
        return self._requested(build, requester)

    async def adopt(self) -> int:
        """What a previous owner left running or queued (builds/reattach.py); build pods too, when the
        executor's builds outlive the service. The number of builds taken up."""
        if self._reattach is None:
            return 0
        adopted = await self._reattach.adopt()
        executor = self._runner.executor
        if isinstance(executor, ReattachingExecutor):
            adopted += await follow_pods(executor, self.follow_running, self._reattach.end_unfound)
        return adopted

    def _requested(self, build: Build, requester: str | None) -> Build:
        build.requests += 1
        joined = requester is not None and requester not in build.requesters
        if requester is not None:
            build.requesters.add(requester)
        if self.recorder is not None:
            if joined and self._joining is not None and self._joining.follows(build):
                self.recorder.joined(build, requester)  # the owner writes the build itself
            elif joined:
                self.recorder.changed(build)
            if build.cached:
                self.recorder.image(build, built=False)  # when it was last asked for (registry GC)
        return build

    def wake_all(self) -> None:
        """Wake every follower of every running build (the service is stopping: they say their last word)."""
        for build in self.active:
            build.wake()

    def _new(
        self,
        repo: ResolvedRepo,
        image: str,
        requester: str | None,
        *,
        cached: bool = False,
        spec_key: str | None = None,
        build_id: str | None = None,
    ) -> Build:
        build = Build.asked(
            build_id or secrets.token_hex(8),
            image,
            repo,
            requester,
            spec_key=spec_key,
            cached=cached,
            max_events=self._max_events,
            recorder=self.recorder,
        )
        if self.recorder is not None:
            self.recorder.changed(build)
        self.history.add(build)
        if repo.note:  # e.g. another branch was used than the one asked for: say so first
            build.emit(Phase.WAITING, f"{repo.note}\n")
        return build

    def _ready(self, repo: ResolvedRepo, image: str, requester: str | None) -> Build:
        recent = self.history.answer(image, requester)
        if recent is not None and self.known.known(image):
            return recent
        build = self._new(repo, image, requester, cached=True)
        build.emit(Phase.BUILT, "Found built image\n", image_name=image)
        ready = build.emit(Phase.READY, "Done! Found built image\n", image_name=image)
        build.finish(BuildStatus.READY, ready)
        self.history.remember_answer(build)
        return build

    def _start(
        self,
        repo: ResolvedRepo,
        image: str,
        requester: str | None,
        spec_key: str | None,
        ticket: Ticket,
        build_id: str | None = None,
    ) -> Build:
        build = self._new(repo, image, requester, spec_key=spec_key, build_id=build_id)
        self.active.add(build, ticket)
        build.emit(Phase.WAITING, f"Waiting for build to start: {repo.build_slug} at {repo.commit[:12]}\n")
        self._runner.launch(build)
        self._metrics.builds_started.inc()
        return build

    def forget_images(self, images: list[str]) -> None:
        """`images` are gone (pruned from the engine): the next request looks again, and builds."""
        self.known.forget(images)

    def images_in_use(self) -> set[str]:
        """Images running builds make or reuse layers of: never pruned from under them."""
        return self.active.in_use()

    def holds(self, build: Build) -> bool:
        return self.history.holds(build)

    async def find_for(self, user: Identity, build_id: str) -> Build:
        return await self.history.find_for(user, build_id)

    async def cancel(self, build_id: str) -> Build:
        """Stop a queued or running build; a finished build is returned as it is."""
        build = self.history.get(build_id)
        if self._joining is not None and self._joining.follows(build):
            await self._joining.cancel_elsewhere(build)  # stopping this copy would stop nothing
        elif build.task is not None and not build.done:
            build.task.cancel()
            await asyncio.wait([build.task])
        return build

    async def cancel_elsewhere(self, build: Build) -> None:
        """Another replica runs `build`: ask it through the store to stop it."""
        if self._joining is not None:
            await self._joining.cancel_elsewhere(build)
        elif self.recorder is not None and not build.done:
            await self.recorder.store.request_cancel(build.id)

    def _cancel_asked(self, build_id: str) -> None:
        """A user asked another replica to cancel a build this one runs."""
        try:
            build = self.history.get(build_id)
        except BuildNotFound:
            return
        followed = self._joining is not None and self._joining.follows(build)
        if build.task is not None and not build.done and not build.cached and not followed:
            log.info("build cancelled from another replica", extra={"build_id": build_id})
            build.task.cancel()

    async def aclose(self) -> None:
        """Stop every running build (service shutdown)."""
        tasks = [b.task for b in self.active if b.task is not None]
        for task in tasks:
            task.cancel(SHUTDOWN)
        if tasks:
            await asyncio.wait(tasks)
        if self._leases is not None:
            await self._leases.aclose()  # the builds' leases go once their last events are stored
