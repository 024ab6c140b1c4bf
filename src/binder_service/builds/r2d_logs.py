"""repo2docker's `--json-logs` lines, read as events."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ..events import Phase
from .executor import Emit

_PHASES = {
    "fetching": Phase.FETCHING,
    "building": Phase.BUILDING,
    "pushing": Phase.PUSHING,
    "running": Phase.BUILDING,
}
# buildx reports its push inside the build's output ("#7 pushing 127.0.0.1:5055/x:y with docker"); our
# buildah engine says "pushing 127.0.0.1:5055/x:y with buildah" before `buildah push` (engines/buildah.py).
_BUILDX_PUSH = re.compile(
    r"^(?:#\d+ (pushing|exporting manifest|exporting config|pushing layers)\b|pushing \S+ with buildah$)"
)
# The engine's own reason ("ERROR: failed to solve: process ... exit code: 3"; buildah: "Error: building
# at STEP ...: exit status 3"): repo2docker's failure line only says that the engine's command failed,
# which tells a user nothing.
_ENGINE_ERROR = re.compile(r"^(?:#\d+ )?((?:ERROR|Error): .*\S)")
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class LogLine:
    phase: Phase | None  # None: stays in the phase the build is in
    message: str
    error: bool = False  # repo2docker said this line is the failure


def parse_line(raw: str) -> LogLine:
    """One line of repo2docker output; a non-JSON line is passed on as a plain message."""
    try:
        data = json.loads(raw)
    except ValueError:
        return LogLine(None, raw if raw.endswith("\n") else raw + "\n")
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return LogLine(None, raw + "\n")
    message: str = data["message"]
    phase_name = data.get("phase")
    if phase_name in ("failed", "failure"):
        return LogLine(None, message, error=True)
    phase = _PHASES.get(phase_name) if isinstance(phase_name, str) else None
    if phase is Phase.BUILDING and _BUILDX_PUSH.match(message):
        phase = Phase.PUSHING
    return LogLine(phase, message)


MAX_LINE = 64 * 1024  # longer output lines are cut: one huge line must not hold the build's memory


class _Readable(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


async def read_lines(stream: _Readable) -> AsyncIterator[str]:
    """Decoded lines of at most MAX_LINE characters, without holding more than one chunk of a long line.

    Works on a subprocess pipe (asyncio) and on an HTTP body (aiohttp) alike."""
    pending = b""
    while chunk := await stream.read(65536):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line[:MAX_LINE].decode("utf-8", "replace")
        if len(pending) > MAX_LINE:
            yield pending[:MAX_LINE].decode("utf-8", "replace")
            pending = b""
    if pending:
        yield pending[:MAX_LINE].decode("utf-8", "replace")


class Progress:
    """Feeds repo2docker output lines to `emit` as phases; keeps the lines repo2docker called failures.

    The engine's own error lines (`ERROR: ...`, while building or pushing) are held back: when the build
    fails, one of them is its reason and is said once, in the `failed` event; when it succeeds after all,
    `flush` emits them as the log lines they were.
    """

    def __init__(self, emit: Emit, phase: Phase = Phase.FETCHING) -> None:
        self._emit = emit
        self.phase = phase
        self.errors: list[str] = []
        self.engine_error: str | None = None
        self._held: list[tuple[Phase, str]] = []

    def feed(self, raw: str) -> None:
        line = parse_line(raw)
        if line.error:
            self.errors.append(line.message.strip())
            return
        # buildx prints its push inside the build's output: once pushing, stay there.
        if line.phase is not None and not (self.phase is Phase.PUSHING and line.phase is Phase.BUILDING):
            self.phase = line.phase
        if self.phase in (Phase.BUILDING, Phase.PUSHING) and (found := _ENGINE_ERROR.match(line.message)):
            self.engine_error = found.group(1)[:MAX_REASON]
            self._held.append((self.phase, line.message))
            return
        self._emit(self.phase, line.message)

    def flush(self) -> None:
        """The build succeeded: the engine error lines held back were only log lines after all."""
        for phase, message in self._held:
            self._emit(phase, message)
        self._held.clear()

    def failure(self, fallback: str) -> str:
        """The reason to report for a failed build: the engine's error, else repo2docker's last word,
        else `fallback`."""
        return self.engine_error or (self.errors[-1] if self.errors else fallback)
