"""After a restart: the builds a previous owner left, taken up from the store and, for build pods, from
the cluster (docs/state.md). Only what a dead owner left is taken: the caller owns the store's lock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..admission import Admission
from ..errors import BinderError, BuildError
from ..events import Phase
from ..metrics import Metrics
from ..providers import ResolvedRepo
from .active import ActiveBuilds
from .build import Build, BuildStatus
from .executor import Adoptee, AdoptingExecutor, ReattachingExecutor
from .history import BuildHistory
from .recording import _ADDED, Recorder, log_events_seen, restore, stored_events
from .replicas import Leases
from .running import BuildRunner, failed

log = logging.getLogger(__name__)

_LOG_PHASES = (Phase.FETCHING, Phase.BUILDING, Phase.PUSHING)  # events a build's log produces


@dataclass
class Reattachment:
    """Takes up recorded builds: local processes followed again from their durable logs, queued builds
    queued again, build pods' records kept until their pods are found (`follow_pod`) or not
    (`end_unfound`)."""

    recorder: Recorder
    runner: BuildRunner
    active: ActiveBuilds
    history: BuildHistory
    admission: Admission
    metrics: Metrics
    max_events: int
    leases: Leases | None = None
    # A restarted service's records of build pods, by build id, waiting for their pods to be found.
    pod_records: dict[str, Build] = field(default_factory=dict)

    async def adopt(self) -> int:
        """Builds a previous owner had queued or running when it stopped: each is followed to its end (a
        local process still running), queued again (never started), or marked failed (its process cannot
        be found). The number followed or queued again.

        This service owns the store's lock (store/ownership.py), so on SQLite every active record's owner
        is gone; on PostgreSQL only the records of this service's own seat (its host and state directory,
        whose lock it holds) are: the other replicas' builds are theirs (ended by their followers when
        their leases run out)."""
        store, adopted = self.recorder.store, 0
        shared = store.dialect == "postgresql"
        for record in await store.active_builds(owner=self.recorder.owner if shared else None):
            events = await stored_events(store, record.id)
            build = restore(record, events, max_events=self.max_events)
            build.recorder = self.recorder
            self.history.add(build)
            where = {"build_id": build.id, "image": build.image_name}
            if build.image_name in self.active:  # two records of one image: keep the first
                build.finish(BuildStatus.FAILED, failed(build, BuildError("superseded by another build")))
                continue
            if record.status == BuildStatus.RUNNING and self.runner.outlives_service:
                self.pod_records[build.id] = build  # its pod is looked for next (`follow_pod`)
                continue
            adopting = isinstance(self.runner.executor, AdoptingExecutor)
            if record.status == BuildStatus.RUNNING and not (adopting and record.pid and record.log_path):
                why = (
                    "binder-service restarted while this build was starting, before its process was "
                    "recorded: it cannot be followed. Ask again to build."
                    if adopting
                    else "binder-service restarted: this record ends here; asking for the image again "
                    "follows the build where it runs"
                )
                build.finish(BuildStatus.FAILED, failed(build, BuildError(why)))
                log.warning("build not adopted: no process recorded", extra=where)
                continue
            self.active.add(build, self.admission.hold_for(build.spec_key, build.requesters))
            if self.leases is not None:
                self.leases.hold(build.image_name, build.id)  # renewed from now on, as before
            if record.status == BuildStatus.RUNNING:
                assert record.pid is not None
                assert record.log_path is not None
                base = record.log_event_base or 0
                job = Adoptee(record.pid, record.log_path, skip=log_events_seen(events, base))
                build.emit(build.phase, "binder-service restarted; following the running build\n")
                self.runner.launch(build, job)
                log.info("adopted a running build", extra={**where, "pid": record.pid})
            else:
                build.emit(Phase.WAITING, "binder-service restarted; waiting for a build slot again\n")
                self.runner.launch(build)
                log.info("queued a build again", extra=where)
            adopted += 1
        return adopted

    def follow_pod(self, image: str, build_id: str) -> Build | None:
        """The record of the build pod `build_id` (of `image`), running again here under its id with its
        stored events, so a client resumes with `Last-Event-ID`; the pod's log lines already stored are
        not said again. None: no such record (the caller starts following the pod as a new build)."""
        known = self.pod_records.pop(build_id, None) if build_id else None
        if known is None or known.image_name != image or image in self.active:
            return None
        self.active.add(known, self.admission.hold_for(known.spec_key, known.requesters))
        skip = sum(e.phase in _LOG_PHASES and not e.message.startswith(_ADDED) for e in known.events())
        known.emit(known.phase, "binder-service restarted; following the build pod again\n")
        self.runner.launch(known, log_skip=skip)
        self.metrics.builds_started.inc()
        return known

    def end_unfound(self) -> int:
        """Records of build pods that were not found again: marked failed. How many."""
        for build in self.pod_records.values():
            why = "binder-service restarted and its build pod is gone; ask again to build"
            build.finish(BuildStatus.FAILED, failed(build, BuildError(why)))
        ended = len(self.pod_records)
        self.pod_records.clear()
        return ended


async def follow_pods(
    executor: ReattachingExecutor,
    follow: Callable[[ResolvedRepo, str, str | None, str], Build],
    end_unfound: Callable[[], int],
) -> int:
    """Ask again for every build whose pod is still running (a restarted replica): each request attaches
    to its pod, so the build is followed, listed and cleaned up here. A build this service recorded keeps
    its id (the pod's annotation) and its stored events; a recorded one whose pod is gone is marked
    failed. The number adopted."""
    try:
        jobs = await executor.running_builds()
    except BinderError as e:
        log.warning("could not look for running build pods", extra={"error": str(e)})
        end_unfound()
        return 0
    adopted = 0
    for job in jobs:
        try:
            follow(job.repo, job.image_name, job.requester, job.build_id)
        except BinderError as e:
            log.warning("could not adopt a running build", extra={"image": job.image_name, "error": str(e)})
            continue
        adopted += 1
        log.info("adopted a running build pod", extra={"image": job.image_name, "build_id": job.build_id})
    end_unfound()
    return adopted
