"""The retention purge: finished builds older than the window go, a bounded number per run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from ..errors import StoreUnavailable
from .records import Purged
from .store import PURGE_BATCH, BuildStore

log = logging.getLogger(__name__)


def interval_for(retention: float) -> float:
    """How often to purge: a tenth of the window, between a minute and an hour."""
    return min(max(retention / 10, 60.0), 3600.0)


async def purge_forever(
    store: BuildStore,
    retention: float,
    *,
    on_purged: Callable[[list[Purged]], Awaitable[None]] | None = None,
    interval: float | None = None,
    batch: int = PURGE_BATCH,
) -> None:
    """Purge now and then every `interval` s; a full batch means a backlog: go again at once."""
    window = timedelta(seconds=retention)
    pause = interval if interval is not None else interval_for(retention)
    while True:
        try:
            gone = await store.purge(window, limit=batch)
        except StoreUnavailable:
            gone = []  # said in the store's log; the next run tries again
        if gone and on_purged is not None:
            await on_purged(gone)
            log.info("build store: purged old builds", extra={"count": len(gone)})
        await asyncio.sleep(0 if len(gone) >= batch else pause)
