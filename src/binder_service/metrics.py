"""Prometheus metrics, one registry per app (so several apps in one process never collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]


class Metrics:
    """Every metric the service exports. Labels never hold repository names, users or secrets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "binder_build_requests", "Build requests by API face and outcome.", ["api", "outcome"], registry=r
        )
        self.cache_hits = Counter(
            "binder_image_cache_hits", "Requests answered by an existing image.", registry=r
        )
        self.builds_started = Counter(
            "binder_builds_started", "Builds started (after deduplication).", registry=r
        )
        self.builds_finished = Counter(
            "binder_builds_finished", "Builds finished, by outcome.", ["outcome"], registry=r
        )
        self.builds_running = Gauge("binder_builds_running", "Builds holding a build slot.", registry=r)
        self.builds_queued = Gauge("binder_builds_queued", "Builds waiting for a slot.", registry=r)
        self.build_seconds = Histogram(
            "binder_build_duration_seconds",
            "Time from start to end of builds that ran.",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600),
            registry=r,
        )
        self.resolve_seconds = Histogram(
            "binder_resolve_duration_seconds",
            "Time to resolve a ref and look the image up.",
            ["provider"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

        # Where a build's time goes; `queued` is the wait for a build slot.
        self.phase_seconds = Histogram(
            "binder_build_phase_duration_seconds",
            "Seconds builds spent per phase (queued, fetching, building, pushing).",
            ["phase"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
            registry=r,
        )
        self.layer_cache_builds = Counter(
            "binder_layer_cache_builds",
            "Successful builds by whether any step reused cached layers (result: hit, miss).",
            ["result"],
            registry=r,
        )
        self.engine_disk_usage = Gauge(
            "binder_engine_disk_usage_bytes",
            "Disk the Docker engine's images and build cache use, as last measured.",
            registry=r,
        )
        self.engine_disk_budget = Gauge(
            "binder_engine_disk_budget_bytes", "The engine disk budget (0: none).", registry=r
        )
        self.engine_pruned = Counter(
            "binder_engine_pruned",
            "Images and build cache records removed to keep the engine under budget (kind: image, cache).",
            ["kind"],
            registry=r,
        )
        self.registry_gc_deleted = Counter(
            "binder_registry_gc_deleted", "Images garbage collection deleted from the registry.", registry=r
        )

        # BinderHub's names, so dashboards made for BinderHub keep working. `binderhub_build_count` has no
        # `repo` label here: repository names stay out of labels (unbounded, and they may be private).
        self.binderhub_build_time = Histogram(
            "binderhub_build_time_seconds",
            "Histogram of build times",
            ["status"],
            buckets=(60, 120, 300, 600, 1800, 3600, 7200),
            registry=r,
        )
        self.binderhub_build_count = Counter(
            "binderhub_build_count", "Counter of builds", ["status", "provider"], registry=r
        )
        self.builds_inprogress = Gauge(
            "binderhub_inprogress_builds", "Builds currently in progress", registry=r
        )

        # Labelled by API name ("GitHub API"), never by token or user.
        self.ratelimit_limit = Gauge(
            "binder_upstream_ratelimit_limit",
            "Requests allowed per window by a host's API.",
            ["api"],
            registry=r,
        )
        self.ratelimit_remaining = Gauge(
            "binder_upstream_ratelimit_remaining",
            "Requests left in the current window of a host's API.",
            ["api"],
            registry=r,
        )
        self.ratelimit_reset = Gauge(
            "binder_upstream_ratelimit_reset_timestamp",
            "Unix time when a host's API rate-limit window resets.",
            ["api"],
            registry=r,
        )

        # Every label value exists from the start, so ratios and rates have data before the first event.
        for result in ("hit", "miss"):
            self.layer_cache_builds.labels(result)
        for kind in ("image", "cache"):
            self.engine_pruned.labels(kind)
        for status in ("success", "failure"):
            self.binderhub_build_time.labels(status)

    def observe_ratelimit(
        self, api: str, limit: float | None, remaining: float | None, reset: float | None
    ) -> None:
        """Record the rate-limit headers of one API answer (a QuotaObserver)."""
        for gauge, value in (
            (self.ratelimit_limit, limit),
            (self.ratelimit_remaining, remaining),
            (self.ratelimit_reset, reset),
        ):
            if value is not None:
                gauge.labels(api).set(value)

    def track_queue(self, waiting: Callable[[], int]) -> None:
        self.builds_queued.set_function(waiting)

    def render(self) -> bytes:
        return generate_latest(self.registry)
