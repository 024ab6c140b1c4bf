"""One owner per build store: a lock the kernel holds for the serving process, and who holds it.

A SQLite store (and a state directory, where local builds keep their durable files) belongs to one
running service. `claim` takes an exclusive `flock` on a lock file beside it, kept for the life of the
process and released by the kernel when the process dies, however it dies: a crash never needs a hand to
clear it, and a free lock is proof that the previous owner is gone (so its builds may be adopted). A
second service asking for a held store is refused with the holder's pid and address, read from the lock
file the holder wrote.

The lock's descriptor is not inherited by child processes (builds that outlive the service must not keep
the next start from owning the store). Within one process a claim is counted, not repeated: the command
line takes it before binding, the app's lifespan takes it again, and it goes with the last release.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from ..db_url import store_url
from .opening import StoreOpenError

__all__ = ["LOCK_NAME", "OwnerLock", "StoreHeld", "claim", "holder", "is_free", "lock_files"]

LOCK_NAME = "binder-service.lock"
_MAX_INFO = 4096


class StoreHeld(StoreOpenError):
    """Another running service owns this state directory or SQLite store."""


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


@dataclass(frozen=True, slots=True)
class OwnerLock:
    """This process's claim on `paths` (lock files); `release` once for each `claim`."""

    paths: tuple[Path, ...]

    def release(self) -> None:
        with _guard:
            for path in self.paths:
                held = _held.get(path)
                if held is None:
                    continue
                held.count -= 1
                if held.count == 0:
                    del _held[path]
                    os.close(held.fd)  # the kernel drops the flock with the last descriptor


def lock_files(state_dir: Path, db_url: str) -> tuple[Path, ...]:
    """The lock files that make a service the owner: its state directory's (its builds' durable files)
    and its SQLite file's (two state directories naming one database still have one owner). A PostgreSQL
    store is shared on purpose (replicas coordinate through leases): only the state directory is locked."""
    paths = [state_dir.resolve() / LOCK_NAME]
    sqlite_file = _sqlite_file(db_url)
    if sqlite_file is not None:
        paths.append(sqlite_file.resolve().with_name(sqlite_file.name + ".lock"))
    return tuple(paths)


def _sqlite_file(db_url: str) -> Path | None:
    try:
        target = store_url(db_url)
    except ValueError:
        return None  # not a URL the store opens: opening it says so
    if target.backend != "sqlite" or target.path in ("", ":memory:"):
        return None
    return Path(target.path)


def claim(paths: tuple[Path, ...], *, address: str) -> OwnerLock:
    """Own every lock in `paths` (all or none), writing this process's pid and `address` into each:
    StoreHeld naming the holder when another process owns one of them."""
    taken: list[Path] = []
    try:
        for path in paths:
            _claim_one(path, address)
            taken.append(path)
    except BaseException:
        OwnerLock(tuple(taken)).release()
        raise
    return OwnerLock(paths)


def _claim_one(path: Path, address: str) -> None:
    with _guard:
        held = _held.get(path)
        if held is not None:  # this process owns it already (the command line, then the app)
            held.count += 1
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_CLOEXEC (Python's default): a build process left running must not hold the store.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreHeld(_held_message(path)) from None
        except BaseException:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "address": address}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _held[path] = _Held(fd, 1)


def holder(path: Path) -> dict[str, object]:
    """What the lock's holder wrote about itself ({} when unreadable: it may be writing it now)."""
    with contextlib.suppress(OSError, ValueError):
        with path.open("rb") as f:
            info = json.loads(f.read(_MAX_INFO) or b"{}")
        if isinstance(info, dict):
            return info
    return {}


def _held_message(path: Path) -> str:
    info = holder(path)
    who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}, serving {info.get('address', '?')}"
    return (
        f"another binder-service ({who}) owns the build store at {path.parent} (lock {path.name}); "
        "a store has one owner: stop that service, or give this one its own state directory "
        "(BINDER_SERVICE_STATE_DIR) — several replicas share one history only on PostgreSQL "
        "(BINDER_SERVICE_DB_URL)"
    )


def is_free(path: Path) -> bool:
    """Nobody holds `path`'s lock (its owner, if it had one, is gone). Used by tests and diagnostics."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the lock taken for the test
    return True
