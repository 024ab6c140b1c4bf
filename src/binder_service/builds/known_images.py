"""Which images exist: the image store's answer, remembered (a build's image exists the moment it ends)."""

from __future__ import annotations

from ..caching import AsyncCache
from ..images.store import ImageStore


class KnownImages:
    """`exists` asks the image store once per image and TTL. "It exists" is stable; "it does not" changes
    the moment a build pushes it (`put`), and an image pruned from the engine is forgotten (`forget`)."""

    def __init__(self, images: ImageStore, *, ttl: float) -> None:
        self._images = images
        self._cache: AsyncCache[str, bool] = AsyncCache(ttl=ttl)

    def known(self, image: str) -> bool:
        """`image` was found (or built) recently: a request for it is answered at once."""
        return bool(self._cache.get(image))

    async def exists(self, image: str) -> bool:
        return await self._cache.get_or_compute(image, lambda: self._images.exists(image), keep=bool)

    async def confirmed(self, image: str) -> bool:
        """The image store's own answer, not a remembered one (a build's result is checked)."""
        return await self._images.exists(image)

    def put(self, image: str) -> None:
        self._cache.put(image, True)

    def forget(self, images: list[str]) -> None:
        for image in images:
            self._cache.discard(image)
