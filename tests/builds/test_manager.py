"""The build manager's own logic, in memory: one build per image, answers from existing images, every way a
build ends (ready, failed, timeout, cancel, shutdown), and the history's bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from binder_service.builds import BuildManager, BuildStatus
from binder_service.builds.executor import BuildJob, Emit
from binder_service.errors import BuildError, BuildNotFound
from binder_service.events import BuildEvent, Phase
from tests.support.fake_builds import GatedExecutor, MemoryImages, memory_manager
from tests.support.records import REPO


@pytest.fixture
def images() -> MemoryImages:
    return MemoryImages()


@pytest.fixture
def executor(images: MemoryImages) -> GatedExecutor:
    return GatedExecutor(images)


@pytest.fixture
async def manager(executor: GatedExecutor, images: MemoryImages) -> AsyncIterator[BuildManager]:
    manager = memory_manager(executor, images, history=3, image_cache_ttl=60)
    yield manager
    executor.gate.set()
    await manager.aclose()


async def _events(build_id: str, manager: BuildManager) -> list[BuildEvent]:
    return [e async for e in manager.history.get(build_id).follow()]


async def _running(executor: GatedExecutor, count: int) -> None:
    while len(executor.runs) < count:
        await asyncio.sleep(0.01)


async def test_one_build_per_image_whoever_asks(manager: BuildManager, executor: GatedExecutor) -> None:
    first = await manager.request(REPO, "img:1")
    second = await manager.request(REPO, "img:1")
    other = await manager.request(REPO, "img:2")
    assert second is first
    assert other is not first
    assert first.requests == 2
    await _running(executor, 2)
    assert manager.images_in_use() == {"img:1", "img:2"}
    executor.gate.set()
    assert (await _events(first.id, manager))[-1].phase is Phase.READY
    assert executor.runs.count("img:1") == 1
    assert manager.known.known("img:1")
    assert manager.images_in_use() == set()


async def test_an_existing_image_is_answered_and_the_answer_reused_per_requester(
    manager: BuildManager, executor: GatedExecutor, images: MemoryImages
) -> None:
    images.present.add("img:there")
    answer = await manager.request(REPO, "img:there")
    assert answer.cached
    assert answer.status is BuildStatus.READY
    assert [e.phase for e in answer.events()] == [Phase.BUILT, Phase.READY]
    assert await manager.request(REPO, "img:there") is answer  # known to exist: the same answer
    assert executor.runs == []


async def test_a_failing_build_says_its_error_once(images: MemoryImages) -> None:
    class Failing:
        async def run(self, job: BuildJob, emit: Emit) -> None:
            emit(Phase.BUILDING, "step 1\n")
            raise BuildError("repo2docker exited with code 4")

        async def check(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

    manager = memory_manager(Failing(), images)
    try:
        build = await manager.request(REPO, "img:bad")
        events = await _events(build.id, manager)
        assert events[-1].phase is Phase.FAILED
        assert events[-1].code == "build_failed"
        assert sum("exited with code 4" in e.message for e in events) == 1
        assert build.status is BuildStatus.FAILED
        again = await manager.request(REPO, "img:bad")  # the image is free again: a new build
        assert again is not build
    finally:
        await manager.aclose()


async def test_a_build_that_leaves_no_image_fails(images: MemoryImages) -> None:
    class Silent:
        async def run(self, job: BuildJob, emit: Emit) -> None:
            emit(Phase.PUSHING, "pushed (somewhere else)\n")

        async def check(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

    manager = memory_manager(Silent(), images)
    try:
        build = await manager.request(REPO, "img:gone")
        last = (await _events(build.id, manager))[-1]
        assert last.code == "build_failed"
        assert "is not in the image store" in last.message
        assert not manager.known.known("img:gone")
    finally:
        await manager.aclose()


async def test_a_build_past_its_timeout_is_stopped(executor: GatedExecutor, images: MemoryImages) -> None:
    manager = memory_manager(executor, images, build_timeout=0.2)
    try:
        build = await manager.request(REPO, "img:slow")
        last = (await _events(build.id, manager))[-1]
        assert last.code == "build_timeout"
        assert "0.2 seconds" in last.message
        assert build.status is BuildStatus.FAILED
    finally:
        await manager.aclose()


async def test_cancel_ends_the_build_and_frees_its_image(
    manager: BuildManager, executor: GatedExecutor
) -> None:
    build = await manager.request(REPO, "img:c")
    await _running(executor, 1)
    assert (await manager.cancel(build.id)) is build
    assert build.status is BuildStatus.CANCELLED
    assert build.events()[-1].code == "build_cancelled"
    assert manager.images_in_use() == set()
    assert (await manager.request(REPO, "img:c")) is not build
    finished = await manager.cancel(build.id)  # a finished build is returned as it is
    assert finished.status is BuildStatus.CANCELLED


async def test_a_queued_build_can_be_cancelled_before_it_runs(
    executor: GatedExecutor, images: MemoryImages
) -> None:
    manager = memory_manager(executor, images, max_concurrent=1)
    try:
        running = await manager.request(REPO, "img:a")
        queued = await manager.request(REPO, "img:b")
        await _running(executor, 1)
        assert queued.status is BuildStatus.QUEUED
        cancelled = await manager.cancel(queued.id)
        assert cancelled.status is BuildStatus.CANCELLED
        executor.gate.set()
        assert (await _events(running.id, manager))[-1].phase is Phase.READY
        assert executor.runs == ["img:a"]
    finally:
        await manager.aclose()


async def test_shutdown_stops_local_builds(manager: BuildManager, executor: GatedExecutor) -> None:
    build = await manager.request(REPO, "img:s")
    await _running(executor, 1)
    await manager.aclose()
    assert build.status is BuildStatus.CANCELLED


async def test_shutdown_leaves_builds_that_outlive_the_service_running(images: MemoryImages) -> None:
    """An executor with `running_builds` (build pods): its builds go on, their records stay running."""

    class Pods(GatedExecutor):
        async def running_builds(self) -> list[BuildJob]:
            return []

    executor = Pods(images)
    manager = memory_manager(executor, images)
    build = await manager.request(REPO, "img:pod")
    await _running(executor, 1)
    await manager.aclose()
    assert not build.done
    assert build.status is BuildStatus.RUNNING


async def test_the_history_keeps_running_builds_and_the_newest_finished(
    manager: BuildManager, executor: GatedExecutor
) -> None:
    executor.gate.set()
    done = [await manager.request(REPO, f"img:{n}") for n in range(5)]
    for build in done:
        assert [e async for e in build.follow()][-1].phase is Phase.READY
    executor.gate.clear()
    running = await manager.request(REPO, "img:running")
    kept = [b.id for b in manager.history.recent()]
    assert kept[0] == running.id  # newest first; a running build always stays
    assert len(kept) == 3
    with pytest.raises(BuildNotFound):
        manager.history.get(done[0].id)


async def test_wake_all_reaches_every_follower(manager: BuildManager) -> None:
    build = await manager.request(REPO, "img:w")
    woken = asyncio.Event()

    async def follow() -> None:
        async for _ in build.follow(stopped=woken.is_set):
            pass

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    woken.set()
    manager.wake_all()
    await asyncio.wait_for(task, timeout=30)  # a hang guard, not a timing bound
