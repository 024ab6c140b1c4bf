"""The images the service built, as their users see them: list your own, delete your own (admins: any).

What was built, by whom and when it was last asked for comes from the build store's `images` table; a
delete goes through the registry API like garbage collection does (registry/gc.py), and is refused
while another user has asked for the same image too (it is theirs as much as yours).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..auth import Identity
from ..errors import Forbidden, ImageNotFound, ImageShared, NoRegistry
from ..store.db import Database, Row
from .registry.catalogue import RegistryImages
from .registry.client import split_image
from .registry.gc import GcReport, delete_in_repo

__all__ = ["ImageAdmin", "ImageInfo"]

_IMAGE = "SELECT image, provider, build_slug, built_at, last_requested_at, requesters FROM images"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    image: str
    provider: str
    repository: str
    built_at: datetime
    last_requested_at: datetime
    requesters: list[str]


class ImageAdmin:
    def __init__(
        self,
        db: Database,
        registry: RegistryImages | None,
        *,
        forget: Callable[[list[str]], None],
    ) -> None:
        self._db = db
        self._registry = registry
        self._forget = forget  # the manager's "this image exists" cache

    async def list(self, user: Identity, *, limit: int = 1000) -> list[ImageInfo]:
        """Images the service built that `user` asked for (admins: all), most recently asked for first."""
        async with self._db.read() as conn:
            rows = await conn.fetch(f"{_IMAGE} WHERE built_at IS NOT NULL ORDER BY last_requested_at DESC")
        found = [_info(r) for r in rows]
        return [i for i in found if user.may_see(set(i.requesters))][:limit]

    async def delete(self, user: Identity, image: str) -> GcReport:
        """Delete `image` from the registry and forget it; errors as above."""
        async with self._db.read() as conn:
            row = await conn.fetch_one(f"{_IMAGE} WHERE image = :image", {"image": image})
        if row is None or row["built_at"] is None:
            raise ImageNotFound(f"no image {image[:300]!r} was built by this service")
        info = _info(row)
        if not user.may_see(set(info.requesters)):
            raise Forbidden("this image belongs to another user")
        if not user.admin and set(info.requesters) - {user.name}:
            raise ImageShared("other users asked for this image too; only an admin deletes it")
        if self._registry is None:
            raise NoRegistry("images are kept in the local Docker engine: no registry to delete them from")
        report = GcReport()
        await delete_in_repo(self._registry, split_image(image)[1], [image], report)
        if report.deleted or report.already_gone:
            async with self._db.transaction() as conn:
                await conn.execute("DELETE FROM images WHERE image = :image", {"image": image})
            self._forget([image])
        return report


def _info(r: Row) -> ImageInfo:  # a row of images
    return ImageInfo(
        image=r["image"],
        provider=r["provider"],
        repository=r["build_slug"],
        built_at=r["built_at"],
        last_requested_at=r["last_requested_at"],
        requesters=list(r["requesters"] or []),
    )
