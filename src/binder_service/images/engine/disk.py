"""Keep a Docker engine's images and build cache under a disk budget, oldest use first.

Measured and pruned through the engine API (the unix socket builds use): `GET /system/df`, then image
deletes (`DELETE /images/<tag>`, never forced: an image a container uses is refused by the engine) and
build-cache deletes (`POST /build/prune` with an `id` filter: buildkit never prunes a record in use),
re-measuring after each, until usage is under the budget. Never touched: pinned images (base images an
operator lists) and the images running builds make or reuse layers of.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from ...errors import EngineUnavailable, UpstreamTimeout
from ...metrics import Metrics
from .client import API, EngineClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Candidate:
    last_use: float  # unix time
    kind: str  # "image" or "cache"
    id: str
    tags: tuple[str, ...] = ()
    size: int = 0


@dataclass
class PruneReport:
    """What one pass did."""

    usage_before: int
    usage_after: int
    budget: int
    removed: list[str] = field(default_factory=list)  # image tags/ids and cache ids

    @property
    def under_budget(self) -> bool:
        return self.usage_after <= self.budget


class EngineDisk:
    """One engine's disk budget. `in_use` names the images running builds need (never pruned)."""

    def __init__(
        self,
        docker_host: str,
        *,
        budget: int,
        pinned: Iterable[str] = (),
        in_use: Callable[[], set[str]] = set,
        on_removed: Callable[[list[str]], None] = lambda _: None,
        timeout: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = EngineClient(docker_host, timeout=timeout)
        self.budget = budget
        self._pinned = set(pinned)
        self._in_use = in_use
        self._on_removed = on_removed  # told the tags that went (a cache of "this image exists" forgets them)
        self._metrics = metrics
        # /system/df and prunes are slow on a big engine: one pass at a time (a df already running is an
        # error in dockerd).
        self._lock = asyncio.Lock()
        self._pending: asyncio.Task[None] | None = None
        if metrics is not None:
            metrics.engine_disk_budget.set(budget)

    async def usage(self) -> int:
        """Bytes the engine's image layers and unshared build cache take."""
        return _usage(await self._df())

    async def enforce(self) -> PruneReport:
        """Prune oldest-use first until usage is under the budget (or nothing more may go)."""
        async with self._lock:
            df = await self._df()
            report = PruneReport(_usage(df), _usage(df), self.budget)
            if report.usage_before > self.budget:
                protected = self._pinned | self._in_use()
                unmeasured = 0
                for candidate in _candidates(df, protected):
                    if not await self._remove(candidate):
                        continue
                    report.removed.append(candidate.tags[0] if candidate.tags else candidate.id)
                    if candidate.tags:
                        self._on_removed(list(candidate.tags))
                    unmeasured += 1
                    # Re-measure when something sizable went (or now and then: freeing an image can
                    # turn the cache records it shared into the space that counts).
                    if candidate.size > 0 or unmeasured >= 10:
                        unmeasured = 0
                        report.usage_after = await self.usage()
                        if report.usage_after <= self.budget:
                            break
                if unmeasured:
                    report.usage_after = await self.usage()
            if self._metrics is not None:
                self._metrics.engine_disk_usage.set(report.usage_after)
            if report.removed:
                log.info(
                    "engine pruned",
                    extra={
                        "removed": len(report.removed),
                        "usage_before": report.usage_before,
                        "usage_after": report.usage_after,
                        "budget": self.budget,
                    },
                )
            if not report.under_budget:
                log.warning(
                    "engine over its disk budget with nothing left to prune",
                    extra={"usage": report.usage_after, "budget": self.budget},
                )
            return report

    def schedule(self) -> None:
        """Check soon, in the background (after a build); one check pending at a time is enough."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._quietly(), name="engine-disk")

    async def _quietly(self) -> None:
        try:
            await self.enforce()
        except (EngineUnavailable, UpstreamTimeout) as e:
            log.warning("engine disk check failed", extra={"error": e.message})

    async def run_forever(self, interval: float) -> None:
        """`enforce` every `interval` seconds; an unreachable engine is logged and tried again."""
        while True:
            await self._quietly()
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
            await asyncio.wait([self._pending])
        await self._engine.aclose()

    async def _remove(self, c: _Candidate) -> bool:
        if c.kind == "cache":
            filters = json.dumps({"id": [c.id]})
            resp = await self._engine.request(
                "POST", f"{API}/build/prune", params={"all": "1", "filters": filters}
            )
            ok = resp.status_code == 200
        else:
            ok = False
            for ref in c.tags or (c.id,):
                # Not forced: the engine refuses (409) an image a container uses or with children.
                resp = await self._engine.request("DELETE", f"{API}/images/{quote(ref, safe='')}")
                ok = ok or resp.status_code == 200
        if ok and self._metrics is not None:
            self._metrics.engine_pruned.labels(c.kind).inc()
        return ok

    async def _df(self) -> dict[str, object]:
        resp = await self._engine.request("GET", f"{API}/system/df")
        if resp.status_code != 200:
            raise self._engine.unexpected(resp, " to df")
        body = resp.json()
        return body if isinstance(body, dict) else {}


def _usage(df: dict[str, object]) -> int:
    layers = df.get("LayersSize")
    total = layers if isinstance(layers, int) else 0
    for record in _records(df, "BuildCache"):
        size = record.get("Size")
        if isinstance(size, int) and not record.get("Shared"):
            total += size  # shared records are image layers, already in LayersSize
    return total


def _records(df: dict[str, object], key: str) -> list[dict[str, object]]:
    items = df.get(key)
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _is_pinned(tags: Iterable[str], protected: set[str]) -> bool:
    return any(t in protected or t.rpartition(":")[0] in protected for t in tags)


def _timestamp(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:  # buildkit's RFC 3339 with nanoseconds: fromisoformat takes at most microseconds
            head, dot, rest = value.partition(".")
            frac = rest.rstrip("Z")[:6]
            return datetime.fromisoformat(
                f"{head}.{frac}+00:00" if dot else head.rstrip("Z") + "+00:00"
            ).timestamp()
        except ValueError:
            return time.time()
    return time.time()


def _candidates(df: dict[str, object], protected: set[str]) -> list[_Candidate]:
    """What may go, oldest use first."""
    out: list[_Candidate] = []
    for image in _records(df, "Images"):
        raw_tags = image.get("RepoTags")
        tags = (
            tuple(t for t in raw_tags if isinstance(t, str) and t != "<none>:<none>")
            if isinstance(raw_tags, list)
            else ()
        )
        containers = image.get("Containers")
        if _is_pinned(tags, protected) or (isinstance(containers, int) and containers > 0):
            continue
        size = image.get("Size")
        shared = image.get("SharedSize")
        unique = (size if isinstance(size, int) else 0) - (
            shared if isinstance(shared, int) and shared > 0 else 0
        )
        out.append(
            _Candidate(_timestamp(image.get("Created")), "image", str(image.get("Id", "")), tags, unique)
        )
    for record in _records(df, "BuildCache"):
        if record.get("InUse"):
            continue
        when = record.get("LastUsedAt") or record.get("CreatedAt")
        size = record.get("Size")
        out.append(
            _Candidate(
                _timestamp(when), "cache", str(record.get("ID", "")), (), size if isinstance(size, int) else 0
            )
        )
    return sorted((c for c in out if c.id), key=lambda c: (c.last_use, c.kind))
