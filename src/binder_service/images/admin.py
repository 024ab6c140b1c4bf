"""The images the service built, as their users see them: list your own, delete your own (admins: any).

What was built, by whom and when it was last asked for comes from the build store's `images` table; a
delete goes through the registry API like garbage collection does (registry/gc.py), and is refused
while another user has asked for the same image too (it is theirs as much as yours).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..auth import Identity
from ..errors import Forbidden, ImageNotFound, ImageShared, NoRegistry
from ..store.models import IMAGES
from .registry.catalogue import RegistryImages
from .registry.client import split_image
from .registry.gc import GcReport, delete_in_repo

__all__ = ["ImageAdmin", "ImageInfo"]


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
        engine: AsyncEngine,
        registry: RegistryImages | None,
        *,
        forget: Callable[[list[str]], None],
    ) -> None:
        self._engine = engine
        self._registry = registry
        self._forget = forget  # the manager's "this image exists" cache

    async def list(self, user: Identity, *, limit: int = 1000) -> list[ImageInfo]:
        """Images the service built that `user` asked for (admins: all), most recently asked for first."""
        query = (
            select(IMAGES).where(IMAGES.c.built_at.is_not(None)).order_by(IMAGES.c.last_requested_at.desc())
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = [_info(r) for r in rows]
        return [i for i in found if user.may_see(set(i.requesters))][:limit]

    async def delete(self, user: Identity, image: str) -> GcReport:
        """Delete `image` from the registry and forget it; errors as above."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(IMAGES).where(IMAGES.c.image == image))).first()
        if row is None or row.built_at is None:
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
            async with self._engine.begin() as conn:
                await conn.execute(delete(IMAGES).where(IMAGES.c.image == image))
            self._forget([image])
        return report


def _info(r: Any) -> ImageInfo:  # a Row of IMAGES
    return ImageInfo(
        image=r.image,
        provider=r.provider,
        repository=r.build_slug,
        built_at=r.built_at,
        last_requested_at=r.last_requested_at,
        requesters=list(r.requesters or []),
    )
