"""Registry garbage collection: delete the images this service built that nobody asked for within the
retention window; never anything it did not build. With them goes buildah's layer cache of the same
repositories (`<repository>-cache`, engines/buildah.py): all of it once no image of the repository is
left, else the cached steps made before the window (a step still in use is made and pushed again).

What was built and when it was last requested comes from the build store's `images` table (an
`ImageRecords`); manifests are deleted through the registry API by digest. A digest another tag of the
same repository also points at (an image someone else pushed, identical to ours) is kept: deleting a
manifest deletes every tag on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ...errors import BinderError
from ...metrics import Metrics
from ...store.db import Database
from ..naming import CACHE_SUFFIX
from .catalogue import DeleteDisabled, RegistryImages
from .client import split_image

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImageUse:
    image: str
    built_at: datetime | None  # None: answered with, never built by this service
    last_requested_at: datetime


class ImageRecords(Protocol):
    """Where the service records the images it built and when each was last requested."""

    async def images(self) -> Sequence[ImageUse]: ...

    async def forget(self, images: Sequence[str]) -> None: ...


class SqlImageRecords:
    """`ImageRecords` over the build store's `images` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def images(self) -> Sequence[ImageUse]:
        async with self._db.read() as conn:
            rows = await conn.fetch("SELECT image, built_at, last_requested_at FROM images")
        return [ImageUse(r["image"], r["built_at"], r["last_requested_at"]) for r in rows]

    async def forget(self, images: Sequence[str]) -> None:
        if images:
            async with self._db.transaction() as conn:
                await conn.execute("DELETE FROM images WHERE image IN (:images)", {"images": list(images)})


@dataclass
class GcReport:
    deleted: list[str] = field(default_factory=list)  # or, in a dry run, what would be
    kept_shared: list[str] = field(default_factory=list)  # a foreign tag points at the same manifest
    already_gone: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cache_deleted: list[str] = field(default_factory=list)  # `<repository>-cache:<key>` tags (buildah)


class RegistryGC:
    """Deletes this service's images (names under `prefix`) not requested for `retention` seconds."""

    def __init__(
        self,
        records: ImageRecords,
        registry: RegistryImages,
        *,
        prefix: str,
        retention: float,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if retention <= 0:
            raise ValueError("registry retention must be positive")
        self._records = records
        self._registry = registry
        self._prefix = prefix
        self._retention = timedelta(seconds=retention)
        self._metrics = metrics
        self._clock = clock

    async def expired(self) -> list[str]:
        """Images this service built, under its prefix, last requested before the window."""
        cutoff = self._clock() - self._retention
        return sorted(
            u.image
            for u in await self._records.images()
            if u.built_at is not None
            and u.image.startswith(self._prefix)
            and _aware(u.last_requested_at) < cutoff
        )

    async def collect(self, *, dry_run: bool = False) -> GcReport:
        report = GcReport()
        uses = await self._records.images()
        built = [u.image for u in uses if u.built_at is not None and u.image.startswith(self._prefix)]
        expired = await self.expired()
        by_repo: dict[str, list[str]] = {}
        for image in expired:
            by_repo.setdefault(split_image(image)[1], []).append(image)
        for repo, images in by_repo.items():
            try:
                await self._collect_repo(repo, images, report, dry_run=dry_run)
            except DeleteDisabled:
                raise  # the same for every repository: say it once, clearly
            except BinderError as e:
                report.errors.append(f"{repo}: {e.message}")
        gone = set(report.deleted + report.already_gone)
        remaining = {split_image(i)[1] for i in built if i not in gone}
        for repo in sorted({split_image(i)[1] for i in built}):
            try:
                await self._collect_cache(
                    repo, everything=repo not in remaining, report=report, dry_run=dry_run
                )
            except DeleteDisabled:
                raise
            except BinderError as e:
                report.errors.append(f"{repo}{CACHE_SUFFIX}: {e.message}")
        if not dry_run:
            await self._records.forget(report.deleted + report.already_gone)
            if self._metrics is not None:
                self._metrics.registry_gc_deleted.inc(len(report.deleted))
        log.info(
            "registry gc",
            extra={"dry_run": dry_run, "deleted": len(report.deleted), "errors": len(report.errors)},
        )
        return report

    async def _collect_cache(self, repo: str, *, everything: bool, report: GcReport, dry_run: bool) -> None:
        """Delete the tags of `repo`'s cache repository made before the window (all of them with
        `everything`: no image of the repository is left)."""
        cache = repo + CACHE_SUFFIX
        cutoff = self._clock() - self._retention
        for tag in await self._registry.tags(cache):
            if not everything:
                made = await self._registry.created(cache, tag)
                if made is None or _aware(made) >= cutoff:
                    continue
            digest = await self._registry.digest(cache, tag)
            if digest is not None and (dry_run or await self._registry.delete(cache, digest)):
                report.cache_deleted.append(f"{cache}:{tag}")

    async def _collect_repo(self, repo: str, images: list[str], report: GcReport, *, dry_run: bool) -> None:
        await delete_in_repo(self._registry, repo, images, report, dry_run=dry_run)


async def delete_in_repo(
    registry: RegistryImages, repo: str, images: list[str], report: GcReport, *, dry_run: bool = False
) -> None:
    """Delete `images` (tags of registry repository `repo`) by digest; one another tag also points at
    is kept (deleting a manifest deletes every tag on it)."""
    ours = {split_image(i)[2]: i for i in images}
    digests = {tag: await registry.digest(repo, tag) for tag in ours}
    foreign: set[str | None] = set()
    for tag in await registry.tags(repo):
        if tag not in ours:
            foreign.add(await registry.digest(repo, tag))
    for tag, image in ours.items():
        digest = digests[tag]
        if digest is None:
            report.already_gone.append(image)
        elif digest in foreign:
            report.kept_shared.append(image)
        elif dry_run or await registry.delete(repo, digest):
            report.deleted.append(image)
        else:
            report.already_gone.append(image)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
