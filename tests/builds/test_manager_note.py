"""A resolution note (e.g. "branch 'master' does not exist; using ...") is the first line of the build."""

from __future__ import annotations

import dataclasses

import pytest

from binder_service.builds.executor import BuildJob, Emit
from binder_service.events import Phase
from tests.support.fake_builds import MemoryImages, memory_manager
from tests.support.records import REPO

NOTE = "branch 'master' does not exist; using the default branch 'main'"


class Instant:
    def __init__(self, images: MemoryImages) -> None:
        self._images = images

    async def run(self, job: BuildJob, emit: Emit) -> None:
        emit(Phase.BUILDING, "built\n")
        self._images.present.add(job.image_name)

    async def check(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("exists", [False, True])
async def test_note_opens_the_stream(exists: bool) -> None:
    images = MemoryImages(everything=exists)
    manager = memory_manager(Instant(images), images, max_concurrent=1, build_timeout=10)
    try:
        build = await manager.request(dataclasses.replace(REPO, note=NOTE), "img:x")
        events = [e async for e in build.follow()]
        assert (events[0].phase, events[0].message) == (Phase.WAITING, NOTE + "\n")
        assert events[-1].phase is Phase.READY
        plain = await manager.request(REPO, "img:y")
        assert all(NOTE not in e.message for e in [e async for e in plain.follow()])
    finally:
        await manager.aclose()
