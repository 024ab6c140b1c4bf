"""The files of a buildah storage: its lock, the mounts under it and its size on disk."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["LOCK", "disk_usage", "mounts_under", "try_lock", "try_lock_probe", "unmount_under"]

LOCK = ".lock"  # a storage's lock file: held by the build using it (and inherited by its process)


def disk_usage(path: Path) -> int:
    """Bytes the files under `path` take on disk, each inode once (overlay layers share none)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(top, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def try_lock(storage: Path) -> int | None:
    """An fd holding `storage`'s exclusive lock, or None when someone else holds it."""
    fd = os.open(storage / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def try_lock_probe(storage: Path) -> bool:
    fd = try_lock(storage)
    if fd is None:
        return False
    os.close(fd)
    return True


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    points: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split(" ")[4].encode().decode("unicode_escape")  # \040 and friends
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return points


def unmount_under(path: Path) -> None:
    """Detach every mount at or below `path` (deepest first)."""
    for point in sorted(mounts_under(path), key=len, reverse=True):
        proc = subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=30)
        if proc.returncode != 0:
            log.warning("could not unmount", extra={"mount": point})
