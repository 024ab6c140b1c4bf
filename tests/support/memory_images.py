"""An image store in memory, for build-manager tests that need no engine or registry."""

from __future__ import annotations


class MemoryImages:
    """`ImageStore`: the images in `present` exist (all of them with `everything=True`)."""

    def __init__(self, present: set[str] | None = None, *, everything: bool = False) -> None:
        self.present = set(present or ())
        self._everything = everything

    async def exists(self, image: str) -> bool:
        return self._everything or image in self.present

    async def check(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
