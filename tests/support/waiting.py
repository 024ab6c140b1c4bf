"""Waiting for a condition in tests: one helper instead of hand-written deadline loops."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
