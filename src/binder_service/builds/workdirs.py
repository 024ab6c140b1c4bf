"""The local executor's private working directories, and the removal of those nobody holds any more.

Each executor makes one (`binder-service-*` in the temp dir) and holds an exclusive `flock` on a file in
it. Every build process inherits that lock (its file descriptor is passed on), so the lock is held as long
as the service *or any build it started* lives, and the kernel drops it when the last of them dies, even
after a SIGKILL. A starting executor removes every such directory whose lock nobody holds: the clones,
temp files and credentials of builds whose process is gone, which no exit handler could remove.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["PREFIX", "Workdir", "sweep_abandoned"]

log = logging.getLogger(__name__)
PREFIX = "binder-service-"
_LOCK = ".lock"


class Workdir:
    """A new private (0700) directory, locked while this process or a build holding `fd` lives."""

    def __init__(self, parent: Path | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        self.fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def sweep_abandoned(parent: Path | None = None) -> list[Path]:
    """Remove the workdirs under `parent` (default: the temp dir) whose lock nobody holds."""
    removed: list[Path] = []
    root = Path(parent or tempfile.gettempdir())
    for path in root.glob(PREFIX + "*"):
        lock = path / _LOCK
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue  # not ours (no lock file), or from before locks existed: leave it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live service, or a build it left running, still holds it
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    if removed:
        log.info("removed abandoned build workdirs", extra={"count": len(removed)})
    return removed
