"""The build registry: at most one build per image, fanned out to every requester, with bounded history."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from itertools import islice
from typing import Any

from ..admission import Admission, Ticket
from ..auth import Identity
from ..caching import AsyncCache
from ..errors import BinderError, BuildCancelled, BuildError, BuildNotFound, BuildTimeout, Forbidden
from ..events import BuildEvent, Phase
from ..image_store import ImageStore
from ..metrics import Metrics
from ..providers import ResolvedRepo
from .build import Build, BuildStatus, now
from .executor import SHUTDOWN, Adoptee, AdoptingExecutor, BuildJob, Executor
from .layer_cache import LayerCache
from .observe import BuildObserver
from .queue import BuildQueue
from .recording import _ADDED, Recorder, log_events_seen, remaining, restore, snapshot, stored_events
from .replicas import Leases, mirror

log = logging.getLogger(__name__)

CANCEL_WAIT = 10.0  # seconds a cancel of another replica's build waits for its end before answering


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
        self._recorder = recorder  # None: memory only (no build store)
        # Replicas sharing a store (PostgreSQL) with local builds: one build per image among them all,
        # the others join it (builds/replicas.py). A build pod is shared through the Kubernetes API instead.
        shared = recorder is not None and recorder.store.dialect == "postgresql"
        self._leases = (
            Leases(recorder.store, owner=recorder.owner, ttl=lease_seconds, on_cancel=self._cancel_asked)
            if recorder is not None and shared and isinstance(executor, AdoptingExecutor)
            else None
        )
        self._claims: dict[str, asyncio.Task[Build]] = {}  # by image: a lease being claimed
        self._mirrors: set[str] = set()  # ids of the builds joined here that another replica runs
        # Build pods: left running at a shutdown (their records stay running), and a restarted service's
        # records of them, waiting for their pods to be found again (`follow_running`) to keep their ids.
        self._left: set[str] = set()
        self._pod_records: dict[str, Build] = {}
        self._log_skips: dict[str, int] = {}  # by build id: log lines already turned into stored events
        # Asked when a build is started or joined; None: no per-user or per-repository limits.
        self._admission = admission or Admission(requests_per_minute=0, builds_per_user=0)
        self._tickets: dict[str, Ticket] = {}  # by build id: the places each running build holds
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

    @property
    def recorder(self) -> Recorder | None:
        return self._recorder

    def known_to_exist(self, image: str) -> bool:
        """`image` was found (or built) recently: a request for it is answered at once."""
        return bool(self._exists.get(image))

    async def image_exists(self, image: str) -> bool:
        return await self._exists.get_or_compute(image, lambda: self._images.exists(image), keep=bool)

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
        build = self._active.get(image)
        if build is None:
            exists = await self.image_exists(image)
            build = self._active.get(image)  # another request may have started it while we looked
            if build is None and exists:
                self._metrics.cache_hits.inc()
                build = self._ready(repo, image, requester)
            elif build is None:
                admitted = await self._admission.admit(user, spec_key=spec_key, image=image)
                build = self._active.get(image)  # started while admission asked the shared store
                if build is None and self._leases is not None:
                    build = await self._start_or_join(repo, image, requester, spec_key, admitted)
                elif build is None:
                    build = self._start(repo, image, requester, spec_key, admitted)
                else:
                    self._admission.release(admitted)
        ticket = self._tickets.get(build.id)
        if ticket is not None:
            await self._admission.join(ticket, user)
        return self._requested(build, requester)

    def follow_running(
        self, repo: ResolvedRepo, image: str, requester: str | None, build_id: str = ""
    ) -> Build:
        """A build that runs already, outside this process (a restarted replica's build pod): followed
        without admission (it was admitted when it started), holding its places again. A build this
        service recorded (`build_id`, from the pod) goes on with its id and stored events, so a client
        resumes with `Last-Event-ID`; the pod's log lines already stored are not said again."""
        build = self._active.get(image)
        known = self._pod_records.pop(build_id, None) if build_id else None
        if build is None and known is not None and known.image_name == image:
            self._active[image] = build = known
            self._tickets[build.id] = self._admission.hold_for(build.spec_key, build.requesters)
            self._log_skips[build.id] = sum(
                e.phase in _LOG_PHASES and not e.message.startswith(_ADDED) for e in build.events()
            )
            build.emit(build.phase, "binder-service restarted; following the build pod again\n")
            self._launch(build)
            self._metrics.builds_started.inc()
        elif build is None:
            ticket = self._admission.hold(users=[requester] if requester else [])
            build = self._start(repo, image, requester, None, ticket)
        return self._requested(build, requester)

    def end_unfound(self) -> int:
        """Records of build pods that were not found again (`follow_running`): marked failed. How many."""
        for build in self._pod_records.values():
            why = "binder-service restarted and its build pod is gone; ask again to build"
            build.finish(BuildStatus.FAILED, _failed(build, BuildError(why)))
        ended = len(self._pod_records)
        self._pod_records.clear()
        return ended

    def _requested(self, build: Build, requester: str | None) -> Build:
        build.requests += 1
        joined = requester is not None and requester not in build.requesters
        if requester is not None:
            build.requesters.add(requester)
        if self._recorder is not None:
            if joined and build.id in self._mirrors:
                self._recorder.joined(build, requester)  # the owner writes the build itself
            elif joined:
                self._recorder.changed(build)
            if build.cached:
                self._recorder.image(build, built=False)  # when it was last asked for (registry GC)
        return build

    def wake_all(self) -> None:
        """Wake every follower of every running build (the service is stopping: they say their last word)."""
        for build in list(self._active.values()):
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
        build = Build(
            id=build_id or secrets.token_hex(8),
            image_name=image,
            repo=repo,
            requester=requester,
            requesters={requester} if requester is not None else set(),
            max_events=self._max_events,
            cached=cached,
            spec_key=spec_key,
            recorder=self._recorder,
        )
        if self._recorder is not None:
            self._recorder.changed(build)
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
        self._active[image] = build
        self._tickets[build.id] = ticket
        build.emit(Phase.WAITING, f"Waiting for build to start: {repo.build_slug} at {repo.commit[:12]}\n")
        self._launch(build)
        self._metrics.builds_started.inc()
        return build

    def _launch(self, build: Build, adopted: Adoptee | None = None) -> None:
        build.task = asyncio.create_task(self._run(build, adopted), name=f"build-{build.id}")
        # Also when the task is cancelled before it ever ran (its `finally` never runs then).
        build.task.add_done_callback(lambda _: self._ended(build))

    def _ended(self, build: Build) -> None:
        """A build's task is over: it is no longer active and its places are free (idempotent)."""
        if not build.done and build.id not in self._left:  # cancelled before it started
            build.finish(BuildStatus.CANCELLED, _failed(build, BuildCancelled("build cancelled")))
        if self._active.get(build.image_name) is build:
            del self._active[build.image_name]
            self._cache_sources.pop(build.image_name, None)
        ticket = self._tickets.pop(build.id, None)
        if ticket is not None:
            self._admission.release(ticket)
        if self._leases is not None:
            self._leases.release(build.image_name, build.id)

    async def _start_or_join(
        self, repo: ResolvedRepo, image: str, requester: str | None, spec_key: str | None, ticket: Ticket
    ) -> Build:
        """Start a build of `image`, unless another replica runs one: then join that build. One claim per
        image at a time here; concurrent requests share it (and it finishes if they go away)."""
        claim = self._claims.get(image)
        if claim is None:
            claim = asyncio.create_task(self._claim(repo, image, requester, spec_key, ticket))
            self._claims[image] = claim
            claim.add_done_callback(lambda t: _claimed(self._claims, image, t))
        else:
            self._admission.release(ticket)  # the first request's build takes the places
        return await asyncio.shield(claim)

    async def _claim(
        self, repo: ResolvedRepo, image: str, requester: str | None, spec_key: str | None, ticket: Ticket
    ) -> Build:
        assert self._leases is not None
        assert self._recorder is not None
        build_id = secrets.token_hex(8)
        proposal = Build(
            id=build_id,
            image_name=image,
            repo=repo,
            requester=requester,
            requesters={requester} if requester is not None else set(),
            spec_key=spec_key,
        )
        try:
            other = await self._leases.claim(snapshot(proposal, owner=self._leases.owner))
        except BaseException:
            self._admission.release(ticket)
            raise
        if other is None:
            return self._start(repo, image, requester, spec_key, ticket, build_id=build_id)
        self._admission.release(ticket)  # another replica's build: its places are counted there
        return await self._join(other)

    async def _join(self, build_id: str) -> Build:
        """Follow another replica's build from the store (one copy here for every requester)."""
        assert self._recorder is not None
        store = self._recorder.store
        record = await store.get_build(build_id)
        if record is None:
            raise BuildError("another replica's build of this image vanished from the build store; ask again")
        build = restore(record, await stored_events(store, build_id), max_events=self._max_events)
        self._builds[build.id] = build
        _trim(self._builds, self._history)
        self._active[build.image_name] = build
        self._mirrors.add(build.id)
        build.task = asyncio.create_task(self._follow_mirror(build), name=f"mirror-{build.id}")
        log.info("joined another replica's build", extra={"build_id": build.id, "owner": record.owner})
        return build

    async def _follow_mirror(self, build: Build) -> None:
        assert self._recorder is not None
        image = build.image_name
        try:
            await mirror(
                build,
                self._recorder.store,
                build_timeout=self._timeout,
                on_ready=lambda: self._exists.put(image, True),
            )
        except asyncio.CancelledError:
            pass  # this service stops; the build goes on where it runs (the task is ours: it ends here)
        finally:
            if self._active.get(image) is build:
                del self._active[image]
            self._mirrors.discard(build.id)

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
            log_skip=self._log_skips.pop(build.id, 0),
            on_process=lambda pid, log_path: self._process_started(build, pid, log_path),
        )

    async def _process_started(self, build: Build, pid: int, log_path: str) -> None:
        """Record a local build's process before following it: a restarted service adopts it from there."""
        build.pid, build.log_path, build.log_event_base = pid, log_path, build.last_event_id
        if self._recorder is None:
            return
        self._recorder.changed(build)
        try:
            async with asyncio.timeout(self._recorder.store.timeout):
                await self._recorder.store.flush()
        except TimeoutError:
            log.warning(
                "build store: the build's process is not recorded yet; a restart now could not adopt it",
                extra={"build_id": build.id, "pid": pid},
            )

    async def _run(self, build: Build, adopted: Adoptee | None = None) -> None:
        observer = BuildObserver(
            self._metrics,
            lambda phase, msg: _log_event(build, phase, msg),
            cache_from=None,
            provider=build.repo.provider,
        )
        status, outcome = BuildStatus.FAILED, "failed"
        try:
            if adopted is None:
                await self._queue.acquire(build)
            else:
                self._queue.take()  # it is running already: it holds a slot, over the limit if need be
            try:
                if adopted is None:
                    build.status, build.started_at, build.queue_position = BuildStatus.RUNNING, now(), None
                    build.deadline = build.started_at + timedelta(seconds=self._timeout)
                    if self._recorder is not None:
                        self._recorder.changed(build)
                self._metrics.builds_running.inc()
                observer.started()
                try:
                    job = await self._job(build)  # after the queue: the newest image may be new by now
                    observer.cache.cache_from = job.cache_from
                    # An adopted build keeps the deadline it had when it started.
                    async with asyncio.timeout(remaining(build.deadline, self._timeout)):
                        if adopted is None:
                            await self._executor.run(job, observer.emit)
                        else:
                            assert isinstance(self._executor, AdoptingExecutor)
                            await self._executor.adopt(job, adopted, observer.emit)
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
            if self._recorder is not None:
                self._recorder.image(build, built=True)
            build.emit(Phase.BUILT, "Built image\n", image_name=build.image_name)
            ready = build.emit(Phase.READY, "Done! Built image\n", image_name=build.image_name)
            status, outcome = BuildStatus.READY, "ready"
            build.finish(status, ready)
        except asyncio.CancelledError as e:
            if SHUTDOWN in e.args and build.status is BuildStatus.RUNNING and self._outlived():
                # Its pod goes on: the record stays running for the restarted service to take up.
                self._left.add(build.id)
                outcome = "shutdown"
            else:
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
            self._ended(build)
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

    def _outlived(self) -> bool:
        """This executor's builds outlive the service and are found again after a restart (build pods,
        `running_builds`); a shutdown stops local processes."""
        return callable(getattr(self._executor, "running_builds", None))

    async def _confirm(self, build: Build) -> None:
        # repo2docker can exit 0 without an image (e.g. a push that silently went elsewhere): check.
        if not await self._images.exists(build.image_name):
            raise BuildError(f"the build finished but {build.image_name} is not in the image store")

    def get(self, build_id: str) -> Build:
        """A build this process holds (running, or recent)."""
        build = self._builds.get(build_id) or self._cached.get(build_id)
        if build is None:
            raise BuildNotFound(f"no build with id {build_id[:64]!r}")
        return build

    def holds(self, build: Build) -> bool:
        """`build` is this process's own (live events), not one read back from the store."""
        return (self._builds.get(build.id) or self._cached.get(build.id)) is build

    async def find(self, build_id: str) -> Build:
        """A build this process holds, else its record in the store (finished, or another replica's)."""
        try:
            return self.get(build_id)
        except BuildNotFound:
            if self._recorder is None or len(build_id) > 32:
                raise
        record = await self._recorder.store.get_build(build_id)
        if record is None:
            raise BuildNotFound(f"no build with id {build_id[:64]!r}")
        return restore(record, [], max_events=self._max_events)

    async def find_for(self, user: Identity, build_id: str) -> Build:
        """`find`, for a caller who may see the build: one who asked for it, here or on another replica
        (those who joined elsewhere are only in the store), or an admin. Forbidden otherwise."""
        build = await self.find(build_id)
        if user.may_see(build.requesters):
            return build
        recorder, name = self._recorder, user.name
        if recorder is not None and name is not None and await recorder.store.is_requester(build.id, name):
            return build
        raise Forbidden("this build belongs to another user")

    async def history(
        self,
        *,
        status: BuildStatus | None = None,
        cached: bool = False,
        limit: int = 100,
        requester: str | None = None,
        visible: Callable[[set[str]], bool] = lambda _: True,
    ) -> list[Build]:
        """Newest first, from the store (every replica's, across restarts) and this process's live builds.

        `requester` None lists everyone's (an admin's view); `visible` filters what this process holds.
        """
        live = self.list(status=status, cached=cached, limit=limit, visible=visible)
        if self._recorder is None:
            return live
        records = await self._recorder.store.list_builds(
            requester=requester, status=status.value if status else None, cached=cached, limit=limit
        )
        merged = {r.id: restore(r, [], max_events=self._max_events) for r in records}
        merged.update({b.id: b for b in live})  # what this process holds is fresher than its record
        return sorted(merged.values(), key=lambda b: b.created_at, reverse=True)[:limit]

    async def adopt(self) -> int:
        """Builds a previous owner had queued or running when it stopped (the store's record): each is
        followed to its end (a local process still running), queued again (never started), or marked
        failed (its process cannot be found). The number followed or queued again.

        Only what a dead owner left is taken (docs/state.md): this service owns the store's lock
        (store/ownership.py), so on SQLite every active record's owner is gone; on PostgreSQL only the
        records of this service's own seat (its host and state directory, whose lock it holds) are, and
        the other replicas' builds are theirs (ended by their followers when their leases run out)."""
        if self._recorder is None:
            return 0
        store, adopted = self._recorder.store, 0
        shared = store.dialect == "postgresql"
        for record in await store.active_builds(owner=self._recorder.owner if shared else None):
            events = await stored_events(store, record.id)
            build = restore(record, events, max_events=self._max_events)
            build.recorder = self._recorder
            self._builds[build.id] = build
            where = {"build_id": build.id, "image": build.image_name}
            if build.image_name in self._active:  # two records of one image: keep the first
                build.finish(BuildStatus.FAILED, _failed(build, BuildError("superseded by another build")))
                continue
            if record.status == BuildStatus.RUNNING and self._outlived():
                self._pod_records[build.id] = build  # its pod is looked for next (`follow_running`)
                continue
            can_follow = isinstance(self._executor, AdoptingExecutor) and record.pid and record.log_path
            if record.status == BuildStatus.RUNNING and not can_follow:
                why = (
                    "binder-service restarted while this build was starting, before its process was "
                    "recorded: it cannot be followed. Ask again to build."
                    if isinstance(self._executor, AdoptingExecutor)
                    else "binder-service restarted: this record ends here; asking for the image again "
                    "follows the build where it runs"
                )
                build.finish(BuildStatus.FAILED, _failed(build, BuildError(why)))
                log.warning("build not adopted: no process recorded", extra=where)
                continue
            self._active[build.image_name] = build
            self._tickets[build.id] = self._admission.hold_for(build.spec_key, build.requesters)
            if self._leases is not None:
                self._leases.hold(build.image_name, build.id)  # renewed from now on, as before
            if record.status == BuildStatus.RUNNING:
                assert record.pid is not None
                assert record.log_path is not None
                base = record.log_event_base or 0
                job = Adoptee(record.pid, record.log_path, skip=log_events_seen(events, base))
                build.emit(build.phase, "binder-service restarted; following the running build\n")
                self._launch(build, job)
                log.info("adopted a running build", extra={**where, "pid": record.pid})
            else:
                build.emit(Phase.WAITING, "binder-service restarted; waiting for a build slot again\n")
                self._launch(build)
                log.info("queued a build again", extra=where)
            adopted += 1
        return adopted

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
        if build.id in self._mirrors:
            await self.cancel_elsewhere(build)  # stopping this copy would stop nothing
        elif build.task is not None and not build.done:
            build.task.cancel()
            await asyncio.wait([build.task])
        return build

    async def cancel_elsewhere(self, build: Build) -> None:
        """Another replica runs `build`: ask it through the store to stop it; a copy followed here is
        waited for a little (it ends with the owner's `build_cancelled` event)."""
        if self._recorder is None or build.done:
            return
        await self._recorder.store.request_cancel(build.id)
        if build.id in self._mirrors and build.task is not None:
            await asyncio.wait([build.task], timeout=CANCEL_WAIT)

    def _cancel_asked(self, build_id: str) -> None:
        """A user asked another replica to cancel a build this one runs."""
        build = self._builds.get(build_id)
        if build is not None and build.task is not None and not build.done and build_id not in self._mirrors:
            log.info("build cancelled from another replica", extra={"build_id": build_id})
            build.task.cancel()

    async def aclose(self) -> None:
        """Stop every running build (service shutdown)."""
        tasks = [b.task for b in self._active.values() if b.task is not None]
        for task in tasks:
            task.cancel(SHUTDOWN)
        if tasks:
            await asyncio.wait(tasks)
        if self._leases is not None:
            await self._leases.aclose()  # the builds' leases go once their last events are stored


_LOG_PHASES = (Phase.FETCHING, Phase.BUILDING, Phase.PUSHING)  # events a build's log produces


def _claimed(claims: dict[str, asyncio.Task[Build]], image: str, task: asyncio.Task[Build]) -> None:
    if claims.get(image) is task:
        del claims[image]
    if not task.cancelled():
        task.exception()  # seen by its requesters; never "never retrieved" when they all went away


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
