"""What one build tells /metrics: how long it queued, fetched, built and pushed, and whether it reused
layers. The manager wraps the executor's `emit` with `BuildObserver.emit` and calls `finish` once."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..events import Phase
from ..images.layer_cache import CacheWatch
from ..metrics import Metrics
from .executor import Emit

# The phases an executor reports, as the `phase` label of binder_build_phase_duration_seconds.
TIMED = (Phase.FETCHING, Phase.BUILDING, Phase.PUSHING)


class BuildObserver:
    """Times the phases of one build and watches its log for layer-cache use."""

    def __init__(
        self,
        metrics: Metrics,
        emit: Emit,
        *,
        cache_from: str | None,
        provider: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._emit = emit
        self._clock = clock
        self.provider = provider
        self.cache = CacheWatch(cache_from)
        self.created = clock()
        self.durations: dict[str, float] = {}
        self._phase: str | None = None
        self._since = 0.0
        self._finished = False

    def started(self) -> None:
        """The build got a slot: the time since it was created was queueing."""
        self.durations["queued"] = self._clock() - self.created
        self._metrics.builds_inprogress.inc()

    def emit(self, phase: Phase, message: str) -> None:
        if phase in TIMED and phase.value != self._phase:
            self._close()
            self._phase, self._since = phase.value, self._clock()
        self.cache.feed(self._emit, phase, message)
        self._emit(phase, message)

    def ran(self) -> None:
        """The executor returned (or raised): the phase it was in ends now."""
        self._close()
        self._metrics.builds_inprogress.dec()

    def _close(self) -> None:
        if self._phase is not None:
            spent = self._clock() - self._since
            self.durations[self._phase] = self.durations.get(self._phase, 0.0) + spent
            self._phase = None

    def finish(self, outcome: str, total: float | None) -> None:
        """Record the build once: phases, cache use, and BinderHub's metrics (`success`/`failure`)."""
        if self._finished:
            return
        self._finished = True
        m = self._metrics
        for phase, seconds in self.durations.items():
            m.phase_seconds.labels(phase).observe(seconds)
        status = "success" if outcome == "ready" else "failure"
        m.binderhub_build_count.labels(status, self.provider).inc()
        if total is not None:
            m.binderhub_build_time.labels(status).observe(total)
        if outcome == "ready":
            m.layer_cache_builds.labels("hit" if self.cache.hit else "miss").inc()
