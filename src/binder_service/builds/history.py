"""The builds this process holds (running and recent, bounded), and the store's record of all the others."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from itertools import islice
from typing import Any

from ..auth import Identity
from ..errors import BuildNotFound, Forbidden
from .build import Build, BuildStatus
from .recording import Recorder, restore


class BuildHistory:
    """Builds that ran here, by id, oldest first, trimmed to `size` finished ones; answers from existing
    images kept apart (so a flood of them never pushes real builds out), with one answer per (image,
    requester) reused while the image is known to exist. Reads fall back to the build store."""

    def __init__(self, *, size: int, max_events: int, recorder: Recorder | None) -> None:
        self._size = size
        self._max_events = max_events
        self._recorder = recorder
        self._builds: OrderedDict[str, Build] = OrderedDict()
        self._cached: OrderedDict[str, Build] = OrderedDict()
        self._cached_by_image: OrderedDict[tuple[str, str | None], Build] = OrderedDict()

    def add(self, build: Build) -> None:
        history = self._cached if build.cached else self._builds
        history[build.id] = build
        trim(history, self._size)

    def answer(self, image: str, requester: str | None) -> Build | None:
        """The answer from an existing image given to `requester` lately, if it is still held."""
        recent = self._cached_by_image.get((image, requester))
        return recent if recent is not None and recent.id in self._cached else None

    def remember_answer(self, build: Build) -> None:
        self._cached_by_image[(build.image_name, build.requester)] = build
        trim(self._cached_by_image, self._size)

    def get(self, build_id: str) -> Build:
        """A build this process holds (running, or recent)."""
        build = self._builds.get(build_id) or self._cached.get(build_id)
        if build is None:
            raise BuildNotFound(f"no build with id {build_id[:64]!r}")
        return build

    def holds(self, build: Build) -> bool:
        """`build` is this process's own (live events), not one read back from the store."""
        return (self._builds.get(build.id) or self._cached.get(build.id)) is build

    async def find(self, build_id: str) -> Build:
        """A build this process holds, else its record in the store (finished, or another replica's)."""
        try:
            return self.get(build_id)
        except BuildNotFound:
            if self._recorder is None or len(build_id) > 32:
                raise
        record = await self._recorder.store.get_build(build_id)
        if record is None:
            raise BuildNotFound(f"no build with id {build_id[:64]!r}")
        return restore(record, [], max_events=self._max_events)

    async def find_for(self, user: Identity, build_id: str) -> Build:
        """`find`, for a caller who may see the build: one who asked for it, here or on another replica
        (those who joined elsewhere are only in the store), or an admin. Forbidden otherwise."""
        build = await self.find(build_id)
        if user.may_see(build.requesters):
            return build
        recorder, name = self._recorder, user.name
        if recorder is not None and name is not None and await recorder.store.is_requester(build.id, name):
            return build
        raise Forbidden("this build belongs to another user")

    def recent(
        self,
        *,
        status: BuildStatus | None = None,
        cached: bool = False,
        limit: int = 100,
        visible: Callable[[set[str]], bool] = lambda _: True,
    ) -> list[Build]:
        """Newest first: builds that ran, and with `cached=True` also answers from existing images.

        `visible` is asked with each build's requesters (the caller's own builds, or all for an admin).
        """
        builds = list(self._builds.values()) + (list(self._cached.values()) if cached else [])
        if cached:
            builds.sort(key=lambda b: b.created_at)
        wanted = (
            b for b in reversed(builds) if (status is None or b.status == status) and visible(b.requesters)
        )
        return list(islice(wanted, limit))

    async def search(
        self,
        *,
        status: BuildStatus | None = None,
        cached: bool = False,
        limit: int = 100,
        requester: str | None = None,
        visible: Callable[[set[str]], bool] = lambda _: True,
    ) -> list[Build]:
        """Newest first, from the store (every replica's, across restarts) and this process's live builds.

        `requester` None lists everyone's (an admin's view); `visible` filters what this process holds.
        """
        live = self.recent(status=status, cached=cached, limit=limit, visible=visible)
        if self._recorder is None:
            return live
        records = await self._recorder.store.list_builds(
            requester=requester, status=status.value if status else None, cached=cached, limit=limit
        )
        merged = {r.id: restore(r, [], max_events=self._max_events) for r in records}
        merged.update({b.id: b for b in live})  # what this process holds is fresher than its record
        return sorted(merged.values(), key=lambda b: b.created_at, reverse=True)[:limit]


def trim(history: OrderedDict[Any, Build], size: int) -> None:
    """Forget the oldest finished builds beyond `size`; running ones always stay."""
    excess = len(history) - size
    if excess > 0:
        # Oldest first, and finished builds cluster at the front: this stops after `excess` of them.
        for key in list(islice((k for k, b in history.items() if b.done), excess)):
            del history[key]
