"""Build processes that outlive the service: output to a log file, exit status to a file.

A local build runs under a tiny `sh` wrapper in a session of its own, its output appended to a per-build
log file under the state directory (not a pipe that dies with the service), and its exit status written
to a file when it ends. The service follows the log file; a restarted service finds the process by the
pid in the build store, checks it is still this build's (its command line names the build's exit file:
a reused pid is not adopted), and follows the same file to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .r2d_logs import read_lines

POLL = 0.05  # seconds between looks at a quiet log file
CHUNK = 65536

# $1: the exit file; the rest: the command. The status is written to a temporary name and renamed, so
# a reader never sees half of it.
_WRAPPER = 'x=$1; shift; "$@"; c=$?; echo "$c" > "$x.tmp" && mv "$x.tmp" "$x"; exit "$c"'


@dataclass(frozen=True, slots=True)
class BuildFiles:
    """The durable files of one build, in a 0700 directory of its own."""

    dir: Path

    @property
    def log(self) -> Path:
        return self.dir / "build.log"

    @property
    def exit(self) -> Path:
        return self.dir / "exit-status"

    @classmethod
    def for_build(cls, state_dir: Path, build_id: str) -> BuildFiles:
        if not build_id.isalnum():
            raise ValueError(f"not a build id: {build_id[:64]!r}")
        return cls(state_dir / "builds" / build_id)

    @classmethod
    def of_log(cls, log_path: str) -> BuildFiles:
        return cls(Path(log_path).parent)

    def create(self) -> None:
        self.dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        self.exit.unlink(missing_ok=True)

    def exit_code(self) -> int | None:
        try:
            return int(self.exit.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


async def spawn(
    argv: Sequence[str],
    files: BuildFiles,
    *,
    env: Mapping[str, str],
    cwd: Path,
    pass_fds: Sequence[int] = (),
) -> asyncio.subprocess.Process:
    """Start `argv` under the wrapper, output appended to `files.log`, in a session (and group) of its own."""
    fd = os.open(files.log, os.O_WRONLY | os.O_APPEND)
    try:
        return await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            _WRAPPER,
            "binder-service-build",
            str(files.exit),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=fd,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,  # no signal meant for the service (or its terminal) reaches it
            pass_fds=tuple(pass_fds),
        )
    finally:
        os.close(fd)


def is_build_process(pid: int, files: BuildFiles) -> bool:
    """`pid` is alive and is this build's wrapper (not another process that got the pid since)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(files.exit).encode() in cmdline.split(b"\0")


async def follow(
    files: BuildFiles,
    feed: Callable[[str], None],
    alive: Callable[[], bool],
    exited: Awaitable[object] | None = None,
) -> int | None:
    """Feed every line of the log, from its start, until the build ends: its exit status, or None when the
    process is gone without writing one (it was killed). `exited` (the process's `wait()`, when it is our
    child) ends the wait for more output at once, not at the next poll."""
    tail = _Tail(files, alive, exited)
    try:
        async for line in read_lines(tail):  # the pipe's line splitting, on the file
            feed(line)
    finally:
        tail.close()
    return await asyncio.to_thread(files.exit_code)


class _Tail:
    """A build's log file as a stream for `read_lines`: a read waits for more output until the build has
    ended (then b""). The exit file, `alive` and the log are looked at in one thread call per poll: none
    of it on the event loop."""

    def __init__(
        self, files: BuildFiles, alive: Callable[[], bool], exited: Awaitable[object] | None
    ) -> None:
        self._files = files
        self._alive = alive
        self._offset = 0
        self._exited = asyncio.ensure_future(exited) if exited is not None else None

    async def read(self, n: int = -1, /) -> bytes:
        while True:
            chunk, ended = await asyncio.to_thread(self._look, CHUNK if n < 0 else n)
            if chunk:
                self._offset += len(chunk)
                return chunk
            if ended:
                return b""
            await self._pause()

    async def _pause(self) -> None:
        if self._exited is None or self._exited.done():
            await asyncio.sleep(POLL)
        else:  # the build's last line -> `ready` without waiting for the next look (issue 16)
            await asyncio.wait((self._exited,), timeout=POLL)

    def close(self) -> None:
        if self._exited is not None and not self._exited.done():
            self._exited.cancel()  # only the waiting: the process is not touched

    def _look(self, size: int) -> tuple[bytes, bool]:
        # Ended is looked at before the read: output written before the end is never missed.
        ended = self._files.exit.exists() or not self._alive()
        return _read(self._files.log, self._offset, size), ended


def _read(path: Path, offset: int, size: int) -> bytes:
    with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
        f.seek(offset)
        return f.read(size)
    return b""
