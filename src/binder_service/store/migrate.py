"""`python -m binder_service.store.migrate TIMEOUT`: migrate the build store whose URL is on stdin.

What `check_store` runs when a store is new or older than this release, so that Alembic is loaded by this
short-lived process and never by the service. Exit 0 when the store is at head; otherwise exit 2 with
the reason (a StoreOpenError's message, secret-free) as the last line on stdout.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from .engine import StoreOpenError, open_engine


async def _migrate(url: str, op_timeout: float) -> None:
    engine = await open_engine(url, op_timeout=op_timeout)
    await engine.dispose()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    url = sys.stdin.readline().rstrip("\n")
    try:
        asyncio.run(_migrate(url, float(argv[0])))
    except StoreOpenError as e:
        print(e, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
