"""Admission: the one component that decides whether a request may start (or join) a build.

It owns the three limits: a user's request rate (`max_requests_per_minute`), a user's queued or running
builds (`max_builds_per_user`) and a repository rule's quota (`spec_config`). The build manager asks it
when a build is started (`admit`) or joined by one more user (`join`); each running build holds a
`Ticket` for its places, given back when the build ends. An existing image is answered without asking:
it takes no place. Alone, a service counts the tickets it holds. Replicas sharing one PostgreSQL build
store share one request log, and every build's places live in the store (store/places.py), which is the
one count across replicas: a new one is taken in one transaction locked on its keys, so two replicas
admitting the last place at the same instant never both succeed; a build that runs already (adopted
after a restart) writes its places there too. A replica renews its places while its builds run; a dead
one's run out after a lease, whatever its build records still say.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .auth import Identity, RequestRate
from .auth.limits import WINDOW
from .errors import QuotaExceeded, StoreUnavailable, TooManyBuilds, TooManyRequests
from .policy import SpecPolicy, SpecRule
from .store import BuildStore


@dataclass(eq=False)
class Ticket:
    """The places one running build holds: one under its rule's quota (if it has one), one per user who
    asked for it. `Admission.release` gives them back, once."""

    rule: SpecRule | None
    users: set[str] = field(default_factory=set)
    released: bool = False
    id: str = field(default_factory=lambda: secrets.token_hex(8))  # its places in a shared store


log = logging.getLogger(__name__)


class Admission:
    def __init__(
        self,
        *,
        requests_per_minute: int,
        builds_per_user: int,
        store: BuildStore | None = None,
        owner: str = "",
        shared: bool = False,
        clock: Callable[[], float] = time.time,
        policy: SpecPolicy | None = None,
        lease_seconds: float = 30.0,
    ) -> None:
        self._lease = lease_seconds  # a shared place runs out this long after its replica's last renewal
        self._shared: dict[str, Ticket] = {}  # by id: tickets holding places in the shared store
        self._renewer: asyncio.Task[None] | None = None
        self._giving_back: set[asyncio.Task[None]] = set()  # places being written or given back
        self._policy = policy or SpecPolicy()
        self._user_places: Counter[str] = Counter()  # running builds each user asked for, here
        self._rule_places: Counter[SpecRule] = Counter()  # running builds under each rule, here
        self.requests_per_minute = requests_per_minute
        self.builds_per_user = builds_per_user
        self._local_rate = RequestRate(requests_per_minute)
        self._store = store if shared else None
        self._owner = owner
        self._clock = clock

    @property
    def shared(self) -> bool:
        return self._store is not None

    def builds_limit(self, user: Identity) -> int:
        """How many queued or running builds `user` may have (0: no limit)."""
        return 0 if user.admin else self.builds_per_user

    async def check_rate(self, user: Identity) -> None:
        """TooManyRequests when `user` asked for builds more often than the rate allows (admins never)."""
        if user.name is None or user.admin or self.requests_per_minute <= 0:
            return
        if self._store is None:
            self._local_rate.check(user.name)
            return
        now = self._clock()
        count = await self._store.record_request(user.name, now, WINDOW)
        if count > self.requests_per_minute:
            oldest = await self._store.oldest_request(user.name, now - WINDOW)
            retry = max(1, int((oldest or now) + WINDOW - now) + 1)
            raise TooManyRequests(
                f"more than {self.requests_per_minute} build requests in a minute; try again in {retry}s"
            )

    async def admit(self, user: Identity | None, *, spec_key: str | None, image: str) -> Ticket:
        """The places a new build of `image` for `user` takes: TooManyBuilds when the user has as many
        builds queued or running as allowed, QuotaExceeded when the repository's rule is full."""
        rule = self._policy.rule(spec_key) if spec_key is not None else None
        quota = rule.quota if rule is not None else None
        limit = self.builds_limit(user) if user is not None else 0
        # What this replica holds is refused here without asking the store; the other replicas' places
        # are counted (with ours) where they are taken, in the store: once, under a lock.
        if user is not None:
            self._check_user(user)
        if rule is not None and quota is not None:
            held = self._rule_places[rule]
            if held >= quota:
                raise QuotaExceeded(
                    f"{(spec_key or '')[:200]}: {held} builds of repositories like this one are running, "
                    f"the most allowed at once (quota {quota}); try again when one has finished"
                )
        ticket = self._ticket(rule)
        if user is not None and user.name is not None:
            self._take_user(ticket, user.name)
        wants = [(_user_key(user.name), limit)] if user is not None and user.name and limit > 0 else []
        if rule is not None and quota is not None:
            wants.append((_rule_key(rule), quota))
        try:
            await self._take_shared(ticket, wants, spec_key=spec_key)
        except BaseException:
            self.release(ticket)
            raise
        return ticket

    async def join(self, ticket: Ticket, user: Identity | None) -> None:
        """`user` joins a running build (its ticket): one more of their places, TooManyBuilds when full.
        Joining takes no place under the rule: the build holds one already."""
        if user is None or user.name is None or user.name in ticket.users or ticket.released:
            return
        self._check_user(user)
        limit = self.builds_limit(user)
        if limit > 0:
            await self._take_shared(ticket, [(_user_key(user.name), limit)])
        self._take_user(ticket, user.name)

    async def _take_shared(
        self, ticket: Ticket, wants: list[tuple[str, int]], *, spec_key: str | None = None
    ) -> None:
        """Places for `ticket` in the shared store, atomically across replicas; else the full one's error."""
        if self._store is None or not wants:
            return
        full = await self._store.take_places(ticket.id, wants, owner=self._owner, ttl=self._lease)
        if full is None:
            self._renewed(ticket)
            return
        if full.startswith("user:"):
            raise TooManyBuilds(
                f"you already have {self.builds_per_user} build(s) queued or running; wait for one to finish"
            )
        raise QuotaExceeded(
            f"{(spec_key or '')[:200]}: as many builds of repositories like this one are running as the "
            "quota allows; try again when one has finished"
        )

    def _renewed(self, ticket: Ticket) -> None:
        """`ticket` holds places in the store: renewed from now on, given back when released."""
        self._shared[ticket.id] = ticket
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="admission-renewal")

    async def _hold_shared(self, ticket: Ticket, keys: list[str]) -> None:
        assert self._store is not None
        try:
            await self._store.hold_places(ticket.id, keys, owner=self._owner, ttl=self._lease)
        except StoreUnavailable:
            log.warning("admission places of a running build not written", extra={"ticket": ticket.id})
            return
        if ticket.released:  # the build ended while its places were written
            await self._give_back(ticket)
        else:
            self._renewed(ticket)

    async def _renew_forever(self) -> None:
        assert self._store is not None
        while True:
            await asyncio.sleep(self._lease / 3)
            if self._shared:
                try:
                    await self._store.renew_places(list(self._shared), ttl=self._lease)
                except StoreUnavailable:
                    log.warning("admission places not renewed", extra={"tickets": len(self._shared)})

    async def _give_back(self, ticket: Ticket) -> None:
        assert self._store is not None
        try:
            await self._store.give_back_places(ticket.id)
        except StoreUnavailable:
            log.warning("admission places not given back; they run out", extra={"ticket": ticket.id})

    async def aclose(self) -> None:
        """Give back what is being given back, stop renewing."""
        if self._giving_back:
            await asyncio.wait(set(self._giving_back), timeout=self._lease)
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    def _ticket(self, rule: SpecRule | None) -> Ticket:
        ticket = Ticket(rule=rule)
        if rule is not None:
            self._rule_places[rule] += 1
        return ticket

    def hold(self, *, rule: SpecRule | None = None, users: Iterable[str] = ()) -> Ticket:
        """A ticket without any check: for a build that runs already (adopted after a restart). With a
        shared store its places are written there too (in the background), so other replicas count it."""
        ticket = self._ticket(rule)
        for name in users:
            self._take_user(ticket, name)
        keys = [_user_key(name) for name in sorted(ticket.users)] if self.builds_per_user > 0 else []
        if rule is not None and rule.quota is not None:
            keys.append(_rule_key(rule))
        if self._store is not None and keys:
            task = asyncio.create_task(self._hold_shared(ticket, keys), name=f"admission-hold-{ticket.id}")
            self._giving_back.add(task)
            task.add_done_callback(self._giving_back.discard)
        return ticket

    def hold_for(self, spec_key: str | None, users: Iterable[str]) -> Ticket:
        """`hold` for a build known by its `spec_key` (its rule is looked up)."""
        return self.hold(rule=self._policy.rule(spec_key) if spec_key else None, users=users)

    def release(self, ticket: Ticket) -> None:
        """The build ended: its places are free again (once, however often this is called)."""
        if ticket.released:
            return
        ticket.released = True
        if self._shared.pop(ticket.id, None) is not None:
            task = asyncio.create_task(self._give_back(ticket), name=f"admission-give-back-{ticket.id}")
            self._giving_back.add(task)
            task.add_done_callback(self._giving_back.discard)
        if ticket.rule is not None:
            self._rule_places[ticket.rule] -= 1
        for name in ticket.users:
            self._user_places[name] -= 1
        self._user_places -= Counter()  # drop users at zero: the counter stays as small as what runs
        self._rule_places -= Counter()

    def holding(self, *, user: str | None = None, rule: SpecRule | None = None) -> int:
        """Places held here by `user`'s builds, or under `rule`."""
        return self._user_places[user] if user is not None else self._rule_places[rule] if rule else 0

    def _take_user(self, ticket: Ticket, name: str) -> None:
        if name not in ticket.users:
            ticket.users.add(name)
            self._user_places[name] += 1

    def _check_user(self, user: Identity) -> None:
        limit = self.builds_limit(user)
        if user.name is None or limit <= 0:
            return
        if self._user_places[user.name] >= limit:
            raise TooManyBuilds(
                f"you already have {limit} build(s) queued or running; wait for one to finish"
            )


def _user_key(name: str) -> str:
    return f"user:{name}"


def _rule_key(rule: SpecRule) -> str:
    # Hashed: a rule's pattern may be longer than a key.
    return "rule:" + hashlib.sha256(rule.pattern.pattern.encode()).hexdigest()[:32]
