"""Replicas on one build store: a build of an image runs in one of them; the others join it.

`Leases` claims the image's lease before a build starts (store/leases.py: atomic across replicas), renews
this replica's leases in the background, gives each back once the build's last event is stored, and
passes on the cancel requests other replicas leave on its leases (a user cancelled where they follow).
`mirror` keeps a joined build (another replica's) in memory as an ordinary `Build` fed from the store, so
every requester here follows one copy, live, with the owner's event ids; when the owner stops renewing
its lease, the first replica to notice ends the build with a `failed` event and everyone gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from ..errors import BuildCancelled, BuildOwnerGone, StoreUnavailable
from ..events import BuildEvent, Phase
from ..store import BuildRecord, BuildStore
from .build import Build, BuildStatus, now

log = logging.getLogger(__name__)

MIRROR_POLL = 0.2  # seconds between looks at a joined build's new events
CANCEL_POLL = 1.0  # seconds between looks for cancel requests on this replica's running builds


class Leases:
    """This replica's build leases: claim, renew (one UPDATE a third of a lease), release."""

    def __init__(
        self,
        store: BuildStore,
        *,
        owner: str,
        ttl: float,
        on_cancel: Callable[[str], None] = lambda build_id: None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self._on_cancel = on_cancel
        self._cancelled: set[str] = set()  # build ids whose cancel request was passed on
        self._held: dict[str, str] = {}  # image -> build id
        self._renewer: asyncio.Task[None] | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    async def claim(self, record: BuildRecord) -> str | None:
        """None: this replica builds `record`; else the id of the build another replica runs of its image."""
        other = await self.store.claim(record, ttl=self.ttl)
        if other is None:
            self.hold(record.image, record.id)
        return other

    def hold(self, image: str, build_id: str) -> None:
        """`build_id` is ours (claimed, or adopted after a restart: renewal takes its lease on again)."""
        self._held[image] = build_id
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="build-lease-renewal")

    def release(self, image: str, build_id: str) -> None:
        """The build ended: its lease goes once its last event is stored (followers read it first)."""
        if self._held.get(image) != build_id:
            return
        del self._held[image]
        self._cancelled.discard(build_id)
        task = asyncio.create_task(self._release(image, build_id), name=f"lease-release-{build_id}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, image: str, build_id: str) -> None:
        try:
            async with asyncio.timeout(self.store.timeout):
                await self.store.flush()
            await self.store.release(image, build_id)
        except (TimeoutError, StoreUnavailable):
            # It runs out on its own; whoever looks then finds the last event stored and only drops it.
            log.warning("build lease not released", extra={"build_id": build_id, "image": image})

    async def renew(self) -> int:
        return await self.store.renew(self.owner, list(self._held.values()), ttl=self.ttl)

    async def pass_on_cancels(self) -> None:
        """Cancel (once each) the builds here that another replica was asked to cancel."""
        for build_id in await self.store.cancel_requests(self.owner, list(self._held.values())):
            if build_id not in self._cancelled:
                self._cancelled.add(build_id)
                self._on_cancel(build_id)

    async def _renew_forever(self) -> None:
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(min(CANCEL_POLL, self.ttl / 3))
            if not self._held:
                continue
            try:
                if time.monotonic() - renewed >= self.ttl / 3:
                    await self.renew()
                    renewed = time.monotonic()
                await self.pass_on_cancels()
            except StoreUnavailable:
                log.warning("build leases not renewed", extra={"leases": len(self._held)})

    async def aclose(self) -> None:
        if self._releasing:
            await asyncio.wait(set(self._releasing), timeout=self.store.timeout)
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None


def replay(build: Build, event: BuildEvent) -> None:
    """`event` (stored by the build's owner) into `build`'s history here, with the owner's id."""
    build._next_id = event.id  # ids stay the owner's, whatever this copy trimmed
    build.emit(
        event.phase,
        event.message,
        image_name=event.image_name,
        queue_position=event.queue_position,
        code=event.code,
    )
    if build.status is BuildStatus.QUEUED and event.phase not in (Phase.WAITING, Phase.FAILED):
        build.status = BuildStatus.RUNNING


def _status(event: BuildEvent) -> BuildStatus:
    if event.phase is Phase.READY:
        return BuildStatus.READY
    return BuildStatus.CANCELLED if event.code == BuildCancelled.code else BuildStatus.FAILED


async def mirror(
    build: Build,
    store: BuildStore,
    *,
    build_timeout: float,
    on_ready: Callable[[], None],
    poll: float = MIRROR_POLL,
) -> None:
    """Feed `build` (another replica's) from the store until its last event; see the module docstring."""
    after = build.last_event_id
    # However the store behaves, this copy ends: a build never outlives its timeout by much.
    give_up = (build.deadline or build.created_at + timedelta(seconds=2 * build_timeout)) + timedelta(
        seconds=60
    )
    while not build.done:
        try:
            batch = await store.events(build.id, after)
            for event in batch:
                replay(build, event)
                after = event.id
                if event.phase.final:
                    build.finish(_status(event), event)
                    if event.phase is Phase.READY:
                        on_ready()
                    return
            if not batch and await _owner_silent(build, store, build_timeout):
                continue  # it was ended here or elsewhere: its last event is stored now
        except StoreUnavailable:
            pass  # the store is away for a moment: look again
        if now() > give_up:
            _lost(build, "lost track of this build (run by another replica) past its timeout")
            return
        await asyncio.sleep(poll)


async def _owner_silent(build: Build, store: BuildStore, build_timeout: float) -> bool:
    """No new event: is the owner still there? True when the build was ended (its last event is stored)."""
    lease = await store.lease_of(build.id)
    if lease is not None:
        return lease.lease_until < now() and await store.expire(build.id)
    record = await store.get_build(build.id)
    if record is None:
        _lost(build, "this build's record is gone from the build store")
    elif record.done:  # released after its last event was stored: read it, or end as the record says
        if await store.events(build.id, build.last_event_id, limit=1):
            return True
        if record.status == BuildStatus.READY:
            event = build.emit(Phase.READY, "Done! Built image\n", image_name=build.image_name)
            build.finish(BuildStatus.READY, event)
        else:
            _lost(build, record.error_message or f"the build ended ({record.status})")
    elif record.stale(now(), build_timeout):  # a record written without a lease (an older release)
        _lost(build, "the replica running this build is gone")
    return False


def _lost(build: Build, why: str) -> None:
    """End this copy with a `failed` event of its own (the store could not give the owner's last one)."""
    if build.done:
        return
    event = build.emit(Phase.FAILED, why + "\n", code=BuildOwnerGone.code)
    build.finish(BuildStatus.FAILED, event)
