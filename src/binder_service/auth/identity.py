"""Who is asking, and what they may do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["anonymous", "token", "user", "service"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller of one request.

    `name` is what builds record as their requester (a hub user or service name, `token-<n>` for a static
    token, None when the service is open). `admin` sees and cancels every build; others only their own.
    """

    name: str | None
    kind: Kind
    admin: bool = False
    can_build: bool = True

    def may_see(self, requesters: frozenset[str] | set[str]) -> bool:
        return self.admin or (self.name is not None and self.name in requesters)


ANONYMOUS = Identity(name=None, kind="anonymous", admin=True)  # an open service on loopback
