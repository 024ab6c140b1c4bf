"""Replicas on one build store (PostgreSQL): a build of an image runs in one of them, the others join it.

Before a local build starts, its image's lease is claimed (builds/replicas.py `Leases`); when another
replica holds it, the build there is joined: one copy here, fed from the store (`mirror`), for every
requester of this replica. A cancel of a joined build is left on its lease for its owner.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from ..admission import Admission, Ticket
from ..errors import BuildError
from ..providers import ResolvedRepo
from .active import ActiveBuilds
from .build import Build
from .history import BuildHistory
from .known_images import KnownImages
from .recording import Recorder, restore, snapshot, stored_events
from .replicas import Leases, mirror

log = logging.getLogger(__name__)

CANCEL_WAIT = 10.0  # seconds a cancel of another replica's build waits for its end before answering

# Starts a build here: (repo, image, requester, spec key, ticket, build id) -> the build.
Start = Callable[[ResolvedRepo, str, str | None, str | None, Ticket, str], Build]


class Joining:
    """Start a build here under the image's lease, or join the one another replica runs."""

    def __init__(
        self,
        *,
        leases: Leases,
        recorder: Recorder,
        admission: Admission,
        active: ActiveBuilds,
        history: BuildHistory,
        known: KnownImages,
        build_timeout: float,
        max_events: int,
        start: Start,
    ) -> None:
        self._leases = leases
        self._recorder = recorder
        self._admission = admission
        self._active = active
        self._history = history
        self._known = known
        self._timeout = build_timeout
        self._max_events = max_events
        self._start = start
        self._claims: dict[str, asyncio.Task[Build]] = {}  # by image: a lease being claimed
        self._mirrors: set[str] = set()  # ids of the builds joined here that another replica runs

    def follows(self, build: Build) -> bool:
        """`build` is another replica's, followed here (stopping this copy would stop nothing)."""
        return build.id in self._mirrors

    async def start_or_join(
        self, repo: ResolvedRepo, image: str, requester: str | None, spec_key: str | None, ticket: Ticket
    ) -> Build:
        """Start a build of `image`, unless another replica runs one: then join that build. One claim per
        image at a time here; concurrent requests share it (and it finishes if they go away)."""
        claim = self._claims.get(image)
        if claim is None:
            claim = asyncio.create_task(self._claim(repo, image, requester, spec_key, ticket))
            self._claims[image] = claim
            claim.add_done_callback(lambda t: _claimed(self._claims, image, t))
        else:
            self._admission.release(ticket)  # the first request's build takes the places
        return await asyncio.shield(claim)

    async def _claim(
        self, repo: ResolvedRepo, image: str, requester: str | None, spec_key: str | None, ticket: Ticket
    ) -> Build:
        build_id = secrets.token_hex(8)
        proposal = Build.asked(build_id, image, repo, requester, spec_key=spec_key)
        try:
            other = await self._leases.claim(snapshot(proposal, owner=self._leases.owner))
        except BaseException:
            self._admission.release(ticket)
            raise
        if other is None:
            return self._start(repo, image, requester, spec_key, ticket, build_id)
        self._admission.release(ticket)  # another replica's build: its places are counted there
        return await self._join(other)

    async def _join(self, build_id: str) -> Build:
        """Follow another replica's build from the store (one copy here for every requester)."""
        store = self._recorder.store
        record = await store.get_build(build_id)
        if record is None:
            raise BuildError("another replica's build of this image vanished from the build store; ask again")
        build = restore(record, await stored_events(store, build_id), max_events=self._max_events)
        self._history.add(build)
        self._active.add(build)
        self._mirrors.add(build.id)
        build.task = asyncio.create_task(self._follow(build), name=f"mirror-{build.id}")
        log.info("joined another replica's build", extra={"build_id": build.id, "owner": record.owner})
        return build

    async def _follow(self, build: Build) -> None:
        image = build.image_name
        try:
            await mirror(
                build,
                self._recorder.store,
                build_timeout=self._timeout,
                on_ready=lambda: self._known.put(image),
            )
        except asyncio.CancelledError:
            pass  # this service stops; the build goes on where it runs (the task is ours: it ends here)
        finally:
            self._active.ended(build)
            self._mirrors.discard(build.id)

    async def cancel_elsewhere(self, build: Build) -> None:
        """Another replica runs `build`: ask it through the store to stop it; a copy followed here is
        waited for a little (it ends with the owner's `build_cancelled` event)."""
        if build.done:
            return
        await self._recorder.store.request_cancel(build.id)
        if build.id in self._mirrors and build.task is not None:
            await asyncio.wait([build.task], timeout=CANCEL_WAIT)


def _claimed(claims: dict[str, asyncio.Task[Build]], image: str, task: asyncio.Task[Build]) -> None:
    if claims.get(image) is task:
        del claims[image]
    if not task.cancelled():
        task.exception()  # seen by its requesters; never "never retrieved" when they all went away
