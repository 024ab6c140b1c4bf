"""Who may read a build: whoever asked for it on any replica (joins elsewhere are only in the store)."""

from __future__ import annotations

import pytest

from binder_service.auth import Identity
from binder_service.builds.recording import Recorder
from binder_service.errors import Forbidden
from binder_service.store import BuildStore
from tests.support.fake_builds import GatedExecutor, MemoryImages, memory_manager
from tests.support.records import REPO

ANN = Identity(name="ann", kind="user")
BEN = Identity(name="ben", kind="user")
EVE = Identity(name="eve", kind="user")


async def test_a_user_who_joined_on_another_replica_may_read_the_build_here(store: BuildStore) -> None:
    images = MemoryImages()
    executor = GatedExecutor(images)
    builds = memory_manager(executor, images, recorder=Recorder(store, owner="replica-a"))
    build = await builds.request(REPO, "reg/img:1", user=ANN)
    assert await builds.find_for(ANN, build.id) is build
    # Ben asked on replica b, which follows this build: b writes only that he asked.
    Recorder(store, owner="replica-b").joined(build, "ben")
    await store.flush()
    assert await builds.find_for(BEN, build.id) is build
    with pytest.raises(Forbidden, match="belongs to another user"):
        await builds.find_for(EVE, build.id)
    executor.gate.set()
    await builds.aclose()
