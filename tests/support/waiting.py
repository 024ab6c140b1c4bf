"""Waiting for a condition in tests: one helper instead of hand-written deadline loops."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call `check` until it returns something truthy, and return that; AssertionError after `timeout`.

    The timeout is a safety net against a hang, not a speed requirement: keep it generous."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check!r}")
        time.sleep(interval)


async def await_until(
    check: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.02, what: str = ""
) -> T:
    """`wait_until` for async tests: the event loop runs while waiting."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check!r}")
        await asyncio.sleep(interval)


def wait_for_http(
    url: str, *, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None, timeout: float = 60.0
) -> None:
    """Until `url` answers 200: a server the test started is up. Fails at once if `proc` has exited."""

    def up() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited:\n{log.read_text() if log else ''}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=timeout, interval=0.1, what=url)
