"""For build-manager tests that need no engine or registry: an image store in memory, and an executor
whose builds run until the test lets them finish."""

from __future__ import annotations

import asyncio
from typing import Any

from binder_service.builds import BuildManager
from binder_service.builds.executor import BuildJob, Emit, Executor
from binder_service.events import Phase
from binder_service.metrics import Metrics


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


class GatedExecutor:
    """Builds that say one line and run until `gate` is set; then their image exists."""

    def __init__(self, images: MemoryImages) -> None:
        self._images = images
        self.gate = asyncio.Event()
        self.runs: list[str] = []

    async def run(self, job: BuildJob, emit: Emit) -> None:
        self.runs.append(job.image_name)
        emit(Phase.BUILDING, "building\n")
        await self.gate.wait()
        self._images.present.add(job.image_name)

    async def check(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def memory_manager(executor: Executor, images: MemoryImages, **options: Any) -> BuildManager:
    """A build manager on `executor` and `images` with small test limits; `options` override them."""
    settings: dict[str, Any] = {
        "push": False,
        "max_concurrent": 4,
        "build_timeout": 30,
        "history": 10,
        "max_events": 1000,
        "image_cache_ttl": 0,
    }
    return BuildManager(executor=executor, images=images, metrics=Metrics(), **{**settings, **options})
