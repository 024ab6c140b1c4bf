"""The build's own destination: what repo2docker (or a build pod) will clone from is checked before it starts.

Resolving a ref connects through the egress policy (`egress.py`), but some requests need no resolution
(a full commit id, a pinned dataset version) and the clone itself is made by repo2docker, not by us. So
every request is checked here, after resolution and whatever path it took: the URL that `ResolvedRepo`
hands to the executor is the one checked, and a name with ANY refused address is refused (repo2docker
resolves it again and may pick any of them). What remains (DNS rebinding between this check and
repo2docker's own lookup) is described in docs/security.md.

A host's verdict (allowed, or refused and why) is kept for `ttl` seconds: the cached path (an image
that exists) then costs no DNS lookup per request, while a name that changes address is looked up
again soon. Lookup failures are never kept.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from ..caching import AsyncCache
from ..errors import DestinationNotAllowed, InvalidSpec, RepoUnreachable, UpstreamTimeout
from ..providers.git.urls import transport, url_host
from .egress import EgressPolicy
from .redaction import redact_url

__all__ = ["DestinationCheck"]


class DestinationCheck:
    """Refuses a repository URL whose host the egress policy does not allow (DestinationNotAllowed)."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        timeout: float,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._timeout = timeout
        # By host: None (allowed) or the refusal to raise again.
        self._verdicts: AsyncCache[str, DestinationNotAllowed | None] = AsyncCache(
            ttl=ttl, max_size=1024, clock=clock
        )

    async def check(self, url: str) -> None:
        if self._policy.allow_private:
            return  # nothing is refused: no lookup needed
        shown = redact_url(url)
        try:
            host = url_host(url)
        except ValueError as e:
            raise InvalidSpec(f"repository URL has an invalid host or port: {shown!r}") from e
        if host is None:
            return  # a local path: `allow_local_repos` governs those, not the network policy
        try:
            async with asyncio.timeout(self._timeout):
                refused = await self._verdicts.get_or_compute(host, lambda: self._verdict(host))
        except TimeoutError as e:
            raise UpstreamTimeout(f"looking up {host} took longer than {self._timeout:g}s") from e
        except socket.gaierror as e:
            if transport(url) == "ssh":
                return  # may be an alias in ssh's own config: ssh decides, as `git ls-remote` does
            raise RepoUnreachable(f"cannot reach {shown}: host not found") from e
        except UnicodeError as e:  # IDNA encoding of a malformed name
            raise InvalidSpec(f"repository URL has an invalid host: {shown!r}") from e
        if refused is not None:
            raise DestinationNotAllowed(refused.message)

    async def _verdict(self, host: str) -> DestinationNotAllowed | None:
        try:
            await self._policy.check_host(host)
        except DestinationNotAllowed as e:
            return e
        return None
