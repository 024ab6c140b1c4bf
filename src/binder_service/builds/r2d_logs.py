"""repo2docker's `--json-logs` lines, read as events."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..events import Phase

_PHASES = {
    "fetching": Phase.FETCHING,
    "building": Phase.BUILDING,
    "pushing": Phase.PUSHING,
    "running": Phase.BUILDING,
}
# buildx reports its push inside the build's output ("#7 pushing 127.0.0.1:5055/x:y with docker").
_BUILDX_PUSH = re.compile(r"^#\d+ (pushing|exporting manifest|exporting config|pushing layers)\b")


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
