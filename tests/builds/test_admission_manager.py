"""The build manager asks `Admission` when a build starts or is joined; the ticket is returned at the end."""

from __future__ import annotations

import pytest

from binder_service.admission import Admission
from binder_service.auth import Identity
from binder_service.builds import BuildManager
from binder_service.errors import QuotaExceeded, TooManyBuilds
from binder_service.policy import SpecPolicy
from tests.support.fake_builds import GatedExecutor, MemoryImages, memory_manager
from tests.support.records import REPO
from tests.support.waiting import await_until

ANN = Identity(name="ann", kind="user")
BEN = Identity(name="ben", kind="user")
ROOT = Identity(name="root", kind="user", admin=True)


def manager(images: MemoryImages, executor: GatedExecutor, admission: Admission) -> BuildManager:
    return memory_manager(executor, images, admission=admission)


async def test_a_users_limit_counts_started_and_joined_builds_until_they_end() -> None:
    images = MemoryImages()
    executor = GatedExecutor(images)
    admission = Admission(requests_per_minute=0, builds_per_user=1)
    builds = manager(images, executor, admission)
    first = await builds.request(REPO, "img:a", user=ANN)
    with pytest.raises(TooManyBuilds, match="you already have 1 build"):
        await builds.request(REPO, "img:b", user=ANN)
    # Ben joins Ann's build: it is now one of his too, so he cannot start another.
    assert await builds.request(REPO, "img:a", user=BEN) is first
    assert admission.holding(user="ben") == 1
    with pytest.raises(TooManyBuilds):
        await builds.request(REPO, "img:c", user=BEN)
    # Asking again for a build one already has takes no second place; admins are never limited.
    assert await builds.request(REPO, "img:a", user=ANN) is first
    assert admission.holding(user="ann") == 1
    await builds.request(REPO, "img:d", user=ROOT)
    await await_until(lambda: executor.runs == ["img:a", "img:d"], what="the admin's build to run")

    executor.gate.set()
    assert first.task is not None
    await first.task
    assert admission.holding(user="ann") == admission.holding(user="ben") == 0
    await builds.request(REPO, "img:b", user=ANN)
    await builds.aclose()


async def test_a_rules_quota_holds_running_builds_and_never_refuses_an_existing_image() -> None:
    images = MemoryImages({"img:built"})
    executor = GatedExecutor(images)
    policy = SpecPolicy(spec_config=[{"pattern": "^git/quota-", "quota": 1}])
    admission = Admission(requests_per_minute=0, builds_per_user=0, policy=policy)
    builds = manager(images, executor, admission)
    rule = policy.rule("git/quota-a")
    assert rule is not None

    running = await builds.request(REPO, "img:a", user=ANN, spec_key="git/quota-a")
    assert admission.holding(rule=rule) == 1
    with pytest.raises(QuotaExceeded, match=r"quota 1"):
        await builds.request(REPO, "img:b", user=BEN, spec_key="git/quota-b")
    # Joining the running build takes no place; a repository outside the pattern is not counted; an
    # image that exists is answered at once, even while the rule is full.
    assert await builds.request(REPO, "img:a", user=BEN, spec_key="git/quota-a") is running
    await builds.request(REPO, "img:free", user=BEN, spec_key="git/free")
    cached = await builds.request(REPO, "img:built", user=BEN, spec_key="git/quota-c")
    assert cached.cached
    assert cached.done
    assert admission.holding(rule=rule) == 1

    executor.gate.set()
    assert running.task is not None
    await running.task
    assert admission.holding(rule=rule) == 0
    await builds.request(REPO, "img:b", user=BEN, spec_key="git/quota-b")
    await builds.aclose()


async def test_a_cancelled_build_gives_its_places_back() -> None:
    images = MemoryImages()
    executor = GatedExecutor(images)
    policy = SpecPolicy(spec_config=[{"pattern": "^git/", "quota": 1}])
    admission = Admission(requests_per_minute=0, builds_per_user=1, policy=policy)
    builds = manager(images, executor, admission)
    build = await builds.request(REPO, "img:a", user=ANN, spec_key="git/a")
    await builds.cancel(build.id)
    assert admission.holding(user="ann") == 0
    assert admission.holding(rule=policy.rule("git/a")) == 0
    await builds.request(REPO, "img:b", user=ANN, spec_key="git/b")
    await builds.aclose()


async def test_release_is_once_and_join_after_the_end_takes_nothing() -> None:
    admission = Admission(requests_per_minute=0, builds_per_user=1)
    ticket = await admission.admit(ANN, spec_key=None, image="img:a")
    admission.release(ticket)
    admission.release(ticket)
    assert admission.holding(user="ann") == 0
    await admission.join(ticket, BEN)  # the build ended while Ben asked
    assert admission.holding(user="ben") == 0
    assert (await admission.admit(ANN, spec_key=None, image="img:b")).users == {"ann"}
