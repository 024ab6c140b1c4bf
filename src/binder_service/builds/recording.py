"""A build's record in the build store: snapshots of the build, its events, and reading them back.

The manager keeps live builds (and recent ones) in memory; everything is also written to the store,
which answers for builds this process no longer holds: finished before a restart, or run by another
replica sharing the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from datetime import datetime
from pathlib import Path

from ..events import BuildEvent, Phase
from ..providers import ResolvedRepo
from ..settings import Settings
from ..store import BuildRecord, BuildStore, ImageTouch, Purged
from .build import Build, BuildStatus, now
from .durable import BuildFiles

POLL = 0.5  # seconds between looks at a build another process runs


def owner_id(settings: Settings) -> str:
    """Who this service is in the store: its seat, the host (name and machine id) and state directory.
    One process at a time holds a seat (the state directory's lock, store/ownership.py), so a restart
    finds its own records again, and two machines that share a host name never take each other's."""
    seat = f"{_machine_id()}:{settings.resolved_state_dir().resolve()}"
    return f"{socket.gethostname()[:48]}-{hashlib.sha256(seat.encode()).hexdigest()[:8]}"


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip()
    return ""  # e.g. a container without one: the host name (a pod's name) tells them apart


async def remove_logs(purged: list[Purged]) -> None:
    """Delete the log directories of purged builds (the retention purge's second half)."""
    for build in purged:
        if build.log_path:
            await asyncio.to_thread(BuildFiles.of_log(build.log_path).remove)


TOUCH_EVERY = 60.0  # seconds: an image's "last requested" is kept to the minute, not to the request
_TOUCHED_MAX = 10_000


class Recorder:
    """Writes one service's builds to the store (queued: nothing here waits for the database)."""

    def __init__(self, store: BuildStore, *, owner: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.owner = owner  # this process: a restarted service adopts the builds it owned
        self._clock = clock
        # (image, requester) -> when last written: the cached path writes an image at most once a minute
        # per requester, not one database transaction per request.
        self._touched: OrderedDict[tuple[str, str | None], float] = OrderedDict()

    def event(self, build: Build, event: BuildEvent) -> None:
        if event.phase.value not in build.phase_times:
            build.phase_times[event.phase.value] = now().isoformat()
        self.store.add_event(build.id, event)

    def changed(self, build: Build) -> None:
        self.store.save_build(snapshot(build, owner=self.owner))

    def joined(self, build: Build, requester: str | None) -> None:
        """`requester` joined `build`, which another replica runs: only who asked is written here."""
        if requester is not None:
            self.store.add_requester(build.id, requester, build.created_at)

    def image(self, build: Build, *, built: bool) -> None:
        key, at = (build.image_name, build.requester), self._clock()
        last = self._touched.get(key)
        if not built and last is not None and at - last < TOUCH_EVERY:
            return
        self._touched[key] = at
        self._touched.move_to_end(key)
        if len(self._touched) > _TOUCHED_MAX:
            self._touched.popitem(last=False)
        self.store.touch_image(
            ImageTouch(
                build.image_name,
                build.repo.provider,
                build.repo.build_slug,
                now(),
                requester=build.requester,
                built=built,
            )
        )


# Build <-> BuildRecord, one mapping for both ways: the fields they share by name are copied as they are
# (a field added to both travels without a word here); the repository's are renamed; three change type.
_CONVERTED = frozenset({"requesters", "status", "phase_times"})
_SAME = tuple(f.name for f in fields(BuildRecord) if f.name in {g.name for g in fields(Build)} - _CONVERTED)
_REPO = {  # record field: ResolvedRepo field
    "provider": "provider",
    "repository": "repo_url",
    "build_slug": "build_slug",
    "ref": "ref",
    "commit": "commit",
    "content_provider": "content_provider",
}


def snapshot(build: Build, *, owner: str | None) -> BuildRecord:
    return BuildRecord(
        **{name: getattr(build, name) for name in _SAME},
        **{name: getattr(build.repo, attr) for name, attr in _REPO.items()},
        image=build.image_name,
        status=build.status.value,
        requesters=tuple(sorted(build.requesters)),
        phase_times=dict(build.phase_times),
        last_event_id=build.last_event_id,
        owner=None if build.done else owner,
    )


def repo_of(record: BuildRecord) -> ResolvedRepo:
    return ResolvedRepo(**{attr: getattr(record, name) for name, attr in _REPO.items()})


_ORDER = list(Phase)


def phase_of(record: BuildRecord) -> Phase:
    """The phase of a stored build's latest event."""
    if record.status == BuildStatus.READY:
        return Phase.READY
    if record.status in (BuildStatus.FAILED, BuildStatus.CANCELLED):
        return Phase.FAILED
    seen = [Phase(p) for p in record.phase_times if p in Phase.__members__.values()]
    return max(seen, key=_ORDER.index) if seen else Phase.WAITING


def restore(record: BuildRecord, events: list[BuildEvent], *, max_events: int) -> Build:
    """A Build in memory again from its record and stored events (none: only to read its record)."""
    build = Build(
        **{name: getattr(record, name) for name in _SAME},
        image_name=record.image,
        repo=repo_of(record),
        requesters=set(record.requesters),
        status=BuildStatus(record.status),
        phase_times=dict(record.phase_times),
        max_events=max_events,
    )
    build.requests = 1  # it answered a request before (a new one joins it: 200, not 201)
    build.load(events, last_event_id=record.last_event_id, phase=phase_of(record))
    return build


async def stored_events(store: BuildStore, build_id: str) -> list[BuildEvent]:
    """Every stored event of a build, in order."""
    events: list[BuildEvent] = []
    while batch := await store.events(build_id, events[-1].id if events else 0):
        events.extend(batch)
    return events


def log_events_seen(events: list[BuildEvent], base: int) -> int:
    """How many events a build's log had produced by `events` (those after `base`, the last event before
    its process started), without the ones the manager adds beside the log ("Reusing layers of ...")."""
    return sum(1 for e in events if e.id > base and not e.message.startswith(_ADDED))


_ADDED = ("Reusing layers of ",)


async def follow_stored(
    store: BuildStore,
    build_id: str,
    after: int,
    *,
    stopped: Callable[[], bool] = lambda: False,
    poll: float = POLL,
    build_timeout: float = 3600.0,
) -> AsyncIterator[BuildEvent]:
    """A stored build's events after `after`, to its end (or until `stopped()`): paged when it is over,
    polled while another process runs it. When that process stops renewing the build's lease, the
    build is ended in the store (a `failed` event, code `build_owner_gone`) and that is the last event."""
    while not stopped():
        batch = await store.events(build_id, after)
        for event in batch:
            yield event
            after = event.id
        if any(e.phase.final for e in batch):
            return
        if not batch:
            # Only when nothing came: is there more to wait for? (Read after the events, so a build
            # that ended in between has its last events read on the next look.) A lease says it first.
            lease = await store.lease_of(build_id)
            if lease is not None and lease.lease_until >= now():
                await asyncio.sleep(poll)  # its owner is alive
                continue
            if lease is not None:
                await store.expire(build_id)  # here or by another replica: the last event is stored
                continue
            record = await store.get_build(build_id)
            if record is None or record.stale(now(), build_timeout):
                return  # a stale record (its replica died unadopted) has nothing more to say
            if record.done:
                if not await store.events(build_id, after, limit=1):
                    return
                continue
            await asyncio.sleep(poll)


def remaining(deadline: datetime | None, timeout: float) -> float:
    """Seconds an adopted build still has before its timeout (what it had left when the service died)."""
    if deadline is None:
        return timeout
    return max((deadline - now()).total_seconds(), 0.0)
