"""The builds that are queued or running now: one per image, with the admission places each holds."""

from __future__ import annotations

from collections.abc import Iterator

from ..admission import Admission, Ticket
from ..auth import Identity
from .build import Build
from .replicas import Leases


class ActiveBuilds:
    """Queued and running builds by image, the admission places (tickets) each holds, the image each reuses
    layers of, and, with replicas, the image's lease: all given back together when a build ends."""

    def __init__(self, admission: Admission, leases: Leases | None = None) -> None:
        self._admission = admission
        self._leases = leases
        self._by_image: dict[str, Build] = {}
        self._tickets: dict[str, Ticket] = {}  # by build id
        self._cache_sources: dict[str, str] = {}  # by image: the image a running build reuses layers of

    def get(self, image: str) -> Build | None:
        return self._by_image.get(image)

    def __contains__(self, image: str) -> bool:
        return image in self._by_image

    def __iter__(self) -> Iterator[Build]:
        return iter(list(self._by_image.values()))

    def add(self, build: Build, ticket: Ticket | None = None) -> None:
        """`build` is the one of its image now, holding `ticket`'s places (None: a copy of another
        replica's build, whose places are counted there)."""
        self._by_image[build.image_name] = build
        if ticket is not None:
            self._tickets[build.id] = ticket

    async def join(self, build: Build, user: Identity | None) -> None:
        """`user` joins `build`: it holds a place of theirs too (admission counts it)."""
        ticket = self._tickets.get(build.id)
        if ticket is not None:
            await self._admission.join(ticket, user)

    def reuses(self, image: str, source: str) -> None:
        self._cache_sources[image] = source

    def in_use(self) -> set[str]:
        """Images running builds make or reuse layers of: never pruned from under them."""
        return set(self._by_image) | set(self._cache_sources.values())

    def ended(self, build: Build) -> None:
        """`build` is over: no longer the one of its image; its places and its lease are given back
        (idempotent)."""
        if self._by_image.get(build.image_name) is build:
            del self._by_image[build.image_name]
            self._cache_sources.pop(build.image_name, None)
        ticket = self._tickets.pop(build.id, None)
        if ticket is not None:
            self._admission.release(ticket)
        if self._leases is not None:
            self._leases.release(build.image_name, build.id)
