"""One build: its state, its event history, and the fan-out of that history to any number of watchers."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from ..events import BuildEvent, Phase
from ..providers import ResolvedRepo


class BuildStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        return self in (BuildStatus.READY, BuildStatus.FAILED, BuildStatus.CANCELLED)


def now() -> datetime:
    return datetime.now(UTC)


class Recorder(Protocol):
    """Where a build's events and changes go besides memory (the build store: builds/recording.py)."""

    def event(self, build: Build, event: BuildEvent) -> None: ...

    def changed(self, build: Build) -> None: ...


@dataclass(eq=False)
class Build:
    """A build of one image. Events are kept in memory (bounded) so late and returning watchers replay them.

    Watchers never slow the build down: `emit` only appends and wakes them; each watcher reads at its
    own pace from the history.
    """

    id: str
    image_name: str
    repo: ResolvedRepo
    requester: str | None = None  # who asked first
    requesters: set[str] = field(default_factory=set)  # everyone who asked (they may see and cancel it)
    max_events: int = 20000
    status: BuildStatus = BuildStatus.QUEUED
    cached: bool = False  # the image already existed; nothing was built
    requests: int = 0  # how many requests this build answered (deduplication at work)
    created_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    queue_position: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    # The durable record (docs/state.md): the spec for quotas, times per phase, and what a restarted
    # service needs to adopt a local build (its process, its log, the log's first event, its deadline).
    spec_key: str | None = None
    phase_times: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    log_path: str | None = None
    log_event_base: int | None = None
    deadline: datetime | None = None
    recorder: Recorder | None = field(default=None, repr=False)
    _phase_hint: Phase = field(default=Phase.WAITING, repr=False)  # a record read without its events
    _events: list[BuildEvent] = field(default_factory=list, repr=False)
    _next_id: int = field(default=1, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @classmethod
    def asked(
        cls,
        build_id: str,
        image_name: str,
        repo: ResolvedRepo,
        requester: str | None,
        *,
        spec_key: str | None = None,
        cached: bool = False,
        max_events: int = 20000,
        recorder: Recorder | None = None,
    ) -> Build:
        """A new build, as a request makes it: `requester` (None: anonymous) is the first who asked."""
        return cls(
            id=build_id,
            image_name=image_name,
            repo=repo,
            requester=requester,
            requesters=set() if requester is None else {requester},
            spec_key=spec_key,
            cached=cached,
            max_events=max_events,
            recorder=recorder,
        )

    @property
    def done(self) -> bool:
        return self.status.done

    @property
    def phase(self) -> Phase:
        return self._events[-1].phase if self._events else self._phase_hint

    @property
    def last_event_id(self) -> int:
        return self._next_id - 1

    def emit(
        self,
        phase: Phase,
        message: str,
        *,
        image_name: str | None = None,
        queue_position: int | None = None,
        code: str | None = None,
    ) -> BuildEvent:
        event = BuildEvent(self._next_id, phase, message, image_name, queue_position, code)
        self._next_id += 1
        self._events.append(event)
        if self.recorder is not None:
            self.recorder.event(self, event)
        if len(self._events) > self.max_events:
            # Keep the head (what started it) and the recent tail; drop the oldest log lines between.
            del self._events[10 : 10 + self.max_events // 10]
        self._wake()
        return event

    def emit_queue_position(self, position: int) -> None:
        self.queue_position = position
        where = "next in line" if position == 1 else f"{position - 1} builds ahead in line"
        self.emit(Phase.WAITING, f"Queued for a build slot: {where}.\n", queue_position=position)

    def finish(self, status: BuildStatus, event: BuildEvent | None = None) -> None:
        """Mark the build done; the final event (ready/failed) is emitted by the caller first."""
        self.status = status
        self.finished_at = now()
        self.queue_position = None
        if event is not None and event.phase is Phase.FAILED:
            self.error_code, self.error_message = event.code, event.message.rstrip("\n")
        if self.recorder is not None:
            self.recorder.changed(self)
        self._wake()

    def load(self, events: list[BuildEvent], *, last_event_id: int = 0, phase: Phase = Phase.WAITING) -> None:
        """History read back from the store (after a restart): new events' ids go on after the last."""
        self._events = list(events[-self.max_events :])
        self._next_id = max(last_event_id, events[-1].id if events else 0) + 1
        self._phase_hint = phase

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """Wake every follower (e.g. to let them see that the service is stopping)."""
        self._wake()

    def _index_after(self, after: int) -> int:
        # ids are increasing but may have a gap (trimmed logs): bisect on id.
        return bisect.bisect_right(self._events, after, key=_event_id)

    def events(self, after: int = 0) -> list[BuildEvent]:
        """Events with id > `after` still in the history."""
        return self._events[self._index_after(after) :]

    async def follow(
        self, after: int = 0, *, stopped: Callable[[], bool] | None = None
    ) -> AsyncIterator[BuildEvent]:
        """Every event after `after`, live, until the final one (or until `stopped()`, checked on waking).

        One event at a time from the shared history: a thousand followers hold no copies of it."""
        while True:
            waiter = self._changed
            i = self._index_after(after)
            while i < len(self._events):
                event = self._events[i]
                yield event
                after = event.id
                # The history may have been trimmed while we yielded: then find our place again.
                if i < len(self._events) and self._events[i].id == after:
                    i += 1
                else:
                    i = self._index_after(after)
            if self.done and after >= self.last_event_id:
                return
            if stopped is not None and stopped():
                return
            await waiter.wait()  # set already if anything happened since it was taken


def _event_id(event: BuildEvent) -> int:
    return event.id
