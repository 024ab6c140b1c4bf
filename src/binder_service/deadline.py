"""A deadline for the operation under way (a send, a paused write) on one lazily armed timer.

Starting and ending an operation costs no timer: the first start that finds none arms one, and when it
fires it is re-armed for the current operation's own deadline, or calls `expired` if that has passed.
A timer per operation (armed, then cancelled) costs a timer handle, its libuv timer and a context copy,
freed only at the end of the loop's iteration: ~100,000 alive at once under a 1,000-stream fan-out
(bench/fanout.py). `close` drops the callback too, so an owner's reference cycle through it is broken
and reference counting alone frees the owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["LazyDeadline"]


class LazyDeadline:
    __slots__ = ("_expired", "_handle", "_loop", "_timeout", "since")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._timeout = timeout
        self._expired: Callable[[], None] | None = expired
        self._handle: asyncio.TimerHandle | None = None
        self.since: float | None = None  # when the operation under way started; None: none is

    def start(self) -> None:
        self.since = self._loop.time()
        if self._handle is None and self._expired is not None:
            self._handle = self._loop.call_at(self.since + self._timeout, self._check)

    def stop(self) -> None:
        self.since = None

    def close(self) -> None:
        self.since, self._expired = None, None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        if self.since is None or self._expired is None:
            return  # nothing under way: the next start arms a timer
        due = self.since + self._timeout
        if self._loop.time() < due:  # started again since the timer was armed: wait for this one
            self._handle = self._loop.call_at(due, self._check)
        else:
            self._expired()
