"""Ending a build's process group: SIGTERM, then SIGKILL for whatever is left (adopted builds too)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

__all__ = ["KILL_GRACE", "end_group", "stop_group"]

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when a build is stopped


async def stop_group(proc: asyncio.subprocess.Process, grace: float = KILL_GRACE) -> None:
    """End `proc`'s whole process group: SIGTERM, then SIGKILL after `grace` seconds if any member is left.

    The group is watched, not just its leader: a member that ignores SIGTERM is killed even when the
    leader exited at once. Safe to call when everything has exited already.
    """
    await end_group(proc.pid, grace)  # start_new_session: the leader's pid is the group's id
    if proc.returncode is None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await proc.wait()


async def end_group(pgid: int, grace: float = KILL_GRACE) -> None:
    """SIGTERM process group `pgid`, then SIGKILL after `grace` seconds if any member is left; returns
    when none is (or `grace` after the SIGKILL). For a build adopted after a restart too (not our child)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(pgid):
            return
        _signal_group(pgid, sig)
        await _group_gone(pgid, grace)


async def _group_gone(pgid: int, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    # No event tells when the last member of a group exits (they are not all our children): poll.
    while _group_alive(pgid) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its credentials: it still exists
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
