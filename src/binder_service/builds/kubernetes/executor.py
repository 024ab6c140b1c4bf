"""The Kubernetes executor: one build pod per image, created through the API, which is also the lock.

A pod's name comes from the image (`images.build_pod_name`), so creating it is "start the build" and a
409 Conflict is "someone (another replica, or this one before a restart) already builds it: attach". The
executor follows the pod's status with a watch and its log into events, deletes the pod when the build is
over (or cancelled), and a background sweep deletes finished and over-age build pods that nobody follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client import ApiClient

from ...errors import BinderError, BuildError, EngineUnavailable, KubeStatus
from ...events import Phase
from ...images.naming import build_pod_name
from ..executor import SHUTDOWN, BuildJob, Emit
from ..r2d_logs import Progress, read_lines
from .api import Pods
from .pod import ANNOTATION, CONTAINER, PodTemplate, build_pod, job_from_annotations, rendezvous
from .pod_status import PodState, failure, read_state

log = logging.getLogger(__name__)

LOG_RECONNECTS = 5  # times a dropped log stream of a still-running pod is re-read
# What buildah's chroot isolation says when a RUN step's process was killed (SIGKILL). Engine buildah runs
# the steps in the build container, so in a pod with a memory limit that is the OOM killer at the limit.
STEP_KILLED = "subprocess exited on killed"


class KubernetesExecutor:
    """Runs each build as a pod; see the module docstring. `api` points at the cluster (or a test's fake)."""

    def __init__(
        self,
        api: ApiClient,
        *,
        namespace: str,
        template: PodTemplate,
        api_timeout: float,
        reap_interval: float = 60.0,
        pod_max_age: float = 0.0,
        sticky_selector: str = "",
        owns_client: bool = False,
        watch_timeout: int = 300,
        finished_grace: float = 60.0,
        unschedulable_grace: float = 600.0,
    ) -> None:
        self._api = api
        self._owns_client = owns_client
        self._pods = Pods(api, namespace, timeout=api_timeout, watch_timeout=watch_timeout)
        self._template = template
        self._timeout = api_timeout
        self._reap_interval = reap_interval
        self._max_age = pod_max_age or template.deadline + 300
        self._sticky_selector = sticky_selector
        self._finished_grace = finished_grace  # a finished pod's own follower deletes it; the sweep waits
        self._unschedulable_grace = unschedulable_grace  # an autoscaler may still add a node
        self._following: set[str] = set()
        self._reaper: asyncio.Task[None] | None = None

    @property
    def namespace(self) -> str:
        return self._pods.namespace

    # --- one build ---

    async def run(self, job: BuildJob, emit: Emit) -> None:
        self.start()
        name = build_pod_name(job.image_name)
        self._following.add(name)
        try:
            await self._create_or_attach(job, name, emit)
            await self._follow(name, emit, skip=job.log_skip)
        except _NotOurs:
            raise  # another image's pod: never delete it
        except asyncio.CancelledError as e:
            # Service shutdown leaves the pod building for a restarted replica; a cancel or timeout stops it.
            if SHUTDOWN not in e.args:
                await self._delete(name, "cancelled")
            raise
        except BaseException:
            await self._delete(name, "failed")
            raise
        else:
            await self._delete(name, "done")
        finally:
            self._following.discard(name)

    async def _create_or_attach(self, job: BuildJob, name: str, emit: Emit) -> None:
        node = await self._sticky_node(job.repo.build_slug) if self._sticky_selector else None
        manifest = build_pod(job, self._template, node=node)
        for _attempt in range(3):
            try:
                await self._pods.create(manifest)
            except KubeStatus as e:
                if e.api_status != 409:
                    raise BuildError(f"Kubernetes refused the build pod: {e}") from None
            else:
                where = f" (preferring node {node})" if node else ""
                log.info("build pod created", extra={"build_id": job.build_id, "pod": name, "node": node})
                emit(Phase.WAITING, f"Build pod {name} created{where}\n")
                return
            existing = await self._pods.get(name)
            if existing is None:
                continue  # deleted since: create again
            image = (existing["metadata"].get("annotations") or {}).get(f"{ANNOTATION}image")
            if image != job.image_name:
                raise _NotOurs(f"build pod {name} exists but builds another image ({image})")
            if read_state(existing).phase == "Failed":
                # An earlier attempt failed and nobody removed its pod (a replica died): build again.
                await self._delete(name, "stale")
                continue
            log.info("attached to build pod", extra={"build_id": job.build_id, "pod": name})
            emit(Phase.WAITING, f"Attached to the running build pod {name}\n")
            return
        raise BuildError(f"could not create build pod {name}: it keeps being replaced")

    async def _follow(self, name: str, emit: Emit, *, skip: int = 0) -> None:
        progress = _Log(Progress(emit))
        reader: asyncio.Task[None] | None = None
        last: dict[str, Any] | None = None
        shown: str | None = None
        stuck_since: float | None = None
        try:
            async with contextlib.aclosing(self._pods.watch(name)) as pods:
                async for pod in pods:
                    if pod is None:
                        raise BuildError(f"the build pod {name} was deleted before the build finished")
                    last, state = pod, read_state(pod)
                    if state.fatal is not None and not state.finished:
                        raise state.fatal
                    if state.waiting and state.waiting != shown:
                        shown = state.waiting
                        emit(Phase.WAITING, f"{state.waiting}\n")
                    stuck_since = self._check_schedulable(state, stuck_since)
                    if state.started and reader is None:
                        reader = asyncio.create_task(
                            self._read_log(name, progress, seen=skip), name=f"log-{name}"
                        )
                    if state.finished:
                        break
            assert last is not None
            if reader is not None:
                # The log ends with the container; a stream that hangs past that is cut.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), self._timeout)
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                await asyncio.wait([reader])
        if read_state(last).phase != "Succeeded":
            found = progress.progress
            reasons = [found.engine_error] if found.engine_error else found.errors
            raise failure(last, reasons, step_killed=progress.step_killed)
        progress.progress.flush()

    def _check_schedulable(self, state: PodState, since: float | None) -> float | None:
        if not state.unschedulable:
            return None
        since = time.monotonic() if since is None else since
        if time.monotonic() - since >= self._unschedulable_grace:
            raise BuildError(state.waiting or "no node can run the build pod")
        return since

    async def _read_log(self, name: str, progress: _Log, *, seen: int = 0) -> None:
        """Feed the log to `progress`; after a dropped stream, read it again, skipping what was seen
        (`seen` at first: the lines a restarted service has stored already)."""
        for _attempt in range(LOG_RECONNECTS + 1):
            skip = seen
            try:
                async with self._pods.log(name, CONTAINER) as body:
                    async for line in read_lines(body):
                        progress.note(line)  # stored lines too: what they said still counts
                        if skip:
                            skip -= 1
                            continue
                        seen += 1
                        progress.progress.feed(line)
            except (BinderError, OSError) as e:
                log.warning("build log stream failed", extra={"pod": name, "error": str(e)})
            try:
                pod = await self._pods.get(name)
            except BinderError:
                return  # the status watch has the last word on the build
            if pod is None or read_state(pod).finished:
                return
            terminated = any("terminated" in (s.get("state") or {}) for s in _statuses(pod))
            if terminated:
                return

    async def _delete(self, name: str, why: str) -> None:
        try:
            await self._pods.delete(name)
            log.info("build pod deleted", extra={"pod": name, "reason": why})
        except BinderError as e:
            # The sweep removes it later.
            log.warning("could not delete build pod", extra={"pod": name, "error": str(e)})

    async def _sticky_node(self, key: str) -> str | None:
        """The docker-api node this repository prefers (its layer cache), or None when none is known."""
        try:
            pods = await self._pods.list(self._sticky_selector)
        except BinderError as e:
            log.warning("could not list docker-api pods for sticky builds", extra={"error": str(e)})
            return None
        nodes = sorted(
            {
                str(p["spec"]["nodeName"])
                for p in pods
                if p.get("spec", {}).get("nodeName") and p.get("status", {}).get("phase") == "Running"
            }
        )
        return rendezvous(key, nodes)

    async def running_builds(self) -> list[BuildJob]:
        """The builds whose pods are still going (this service's labels), read back from their annotations:
        a restarted replica asks for them again, which attaches to the pods (409)."""
        jobs = []
        for pod in await self._pods.list(self._template.label_selector):
            if read_state(pod).finished or pod["metadata"].get("deletionTimestamp"):
                continue
            notes = pod["metadata"].get("annotations") or {}
            job = job_from_annotations(notes)
            if job is not None and build_pod_name(job.image_name) == pod["metadata"]["name"]:
                jobs.append(job)
        return jobs

    # --- the service around builds ---

    async def check(self) -> None:
        """A cheap namespaced call: can we list (our) pods?"""
        try:
            await self._pods.list(self._template.label_selector, limit=1)
        except KubeStatus as e:
            raise EngineUnavailable(
                f"the Kubernetes API refused to list pods in namespace {self.namespace}: {e}"
            ) from None

    def start(self) -> None:
        """Start the sweep (once); `run` starts it too."""
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="build-pod-reaper")

    async def reap(self) -> list[str]:
        """One sweep: delete finished build pods nobody here follows, and pods older than the max age."""
        deleted: list[str] = []
        now = datetime.now(UTC)
        for pod in await self._pods.list(self._template.label_selector):
            name = str(pod["metadata"]["name"])
            age = (now - _time(pod["metadata"].get("creationTimestamp"), now)).total_seconds()
            state = read_state(pod)
            if age > self._max_age:
                why = "over-age"
            elif state.finished and name not in self._following and _idle(pod, now) >= self._finished_grace:
                why = "finished"
            else:
                continue
            if await self._pods.delete(name):
                log.info("build pod reaped", extra={"pod": name, "reason": why, "age": round(age)})
                deleted.append(name)
        return deleted

    async def _reap_forever(self) -> None:
        while True:
            try:
                await self.reap()
            except BinderError as e:
                log.warning("build pod sweep failed", extra={"error": str(e)})
            await asyncio.sleep(self._reap_interval)

    async def aclose(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.wait([self._reaper])
            self._reaper = None
        if self._owns_client:
            await self._api.close()


class _Log:
    """A build pod's log as it is read: its events (`progress`), and whether a RUN step was killed."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.step_killed = False

    def note(self, line: str) -> None:
        if STEP_KILLED in line:
            self.step_killed = True


class _NotOurs(BuildError):
    """The pod's name is taken by another image's build (a hash collision)."""


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod.get("status", {}).get("containerStatuses") or [])


def _time(value: object, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return default


def _idle(pod: dict[str, Any], now: datetime) -> float:
    """Seconds since the pod's container finished (its creation when that is unknown)."""
    ends = [
        _time(s["state"]["terminated"].get("finishedAt"), now)
        for s in _statuses(pod)
        if "terminated" in (s.get("state") or {})
    ]
    since = max(ends) if ends else _time(pod["metadata"].get("creationTimestamp"), now)
    return (now - since).total_seconds()
