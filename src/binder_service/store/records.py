"""What the store holds, as plain values (no ORM objects leave the store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..events import BuildEvent

ACTIVE = ("queued", "running")  # build statuses that are not over


@dataclass(frozen=True, slots=True)
class BuildRecord:
    """A build as stored: a snapshot, rewritten whole whenever the build changes."""

    id: str
    image: str
    provider: str
    repository: str
    build_slug: str
    ref: str
    commit: str
    status: str
    created_at: datetime
    content_provider: str = "Git"
    spec_key: str | None = None
    requester: str | None = None
    requesters: tuple[str, ...] = ()
    cached: bool = False
    error_code: str | None = None
    error_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    phase_times: dict[str, str] = field(default_factory=dict)
    last_event_id: int = 0
    owner: str | None = None
    pid: int | None = None
    log_path: str | None = None
    log_event_base: int | None = None
    deadline: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE

    def stale(self, now: datetime, timeout: float) -> bool:
        """Recorded as active, but past any time it could still be (its replica died and nobody adopted
        it): no build runs past its deadline, none waits in line longer than a build may take."""
        if self.done:
            return False
        limit = self.deadline or self.created_at + timedelta(seconds=2 * timeout)
        return now > limit + timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class EventWrite:
    build_id: str
    event: BuildEvent
    at: datetime


@dataclass(frozen=True, slots=True)
class RequesterWrite:
    """One more user asked for a build that another replica writes (joined it)."""

    build_id: str
    requester: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ImageTouch:
    """An image was asked for (and maybe just built): what registry garbage collection goes by."""

    image: str
    provider: str
    build_slug: str
    at: datetime
    requester: str | None = None
    built: bool = False


@dataclass(frozen=True, slots=True)
class Purged:
    """A build the retention purge deleted, with the log file its owner should delete too."""

    id: str
    log_path: str | None
