"""The build event model, and its two wire forms (BinderHub-compatible and native)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    """BinderHub's phases, in the order a build moves through them."""

    WAITING = "waiting"
    FETCHING = "fetching"
    BUILDING = "building"
    PUSHING = "pushing"
    BUILT = "built"
    READY = "ready"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (Phase.READY, Phase.FAILED)


@dataclass(frozen=True, slots=True)
class BuildEvent:
    """One thing that happened to a build. ``id`` counts up from 1 within its build."""

    id: int
    phase: Phase
    message: str
    image_name: str | None = None
    queue_position: int | None = None
    code: str | None = None  # machine-readable error code, on `failed`
    # The SSE messages, encoded once for every subscriber (a thousand watchers share one copy).
    _binderhub_sse: bytes | None = field(default=None, compare=False, repr=False)
    _native_sse: bytes | None = field(default=None, compare=False, repr=False)

    def binderhub_sse(self) -> bytes:
        """`data: {json}` as BinderHub streams it."""
        if self._binderhub_sse is None:
            object.__setattr__(self, "_binderhub_sse", sse_message(self.binderhub()))
        assert self._binderhub_sse is not None
        return self._binderhub_sse

    def native_sse(self) -> bytes:
        """`id:` + `data: {json}` of the native stream (the id is what `Last-Event-ID` resumes from)."""
        if self._native_sse is None:
            object.__setattr__(self, "_native_sse", sse_message(self.native(), id=self.id))
        assert self._native_sse is not None
        return self._native_sse

    def binderhub(self) -> dict[str, Any]:
        """The JSON BinderHub sends (`phase`, `message`, `imageName`), plus our extra fields."""
        data: dict[str, Any] = {"phase": self.phase.value, "message": self.message}
        if self.image_name is not None:
            data["imageName"] = self.image_name
        if self.queue_position is not None:
            data["queuePosition"] = self.queue_position
        if self.code is not None:
            data["code"] = self.code
        return data

    def native(self) -> dict[str, Any]:
        """The native API's form: snake_case, always every key."""
        return {
            "id": self.id,
            "phase": self.phase.value,
            "message": self.message,
            "image_name": self.image_name,
            "queue_position": self.queue_position,
            "code": self.code,
        }


def sse_message(data: dict[str, Any], *, id: int | None = None, event: str | None = None) -> bytes:
    """One Server-Sent Events message; JSON never holds a raw newline, so `data` is one line."""
    head = (f"event: {event}\n" if event else "") + (f"id: {id}\n" if id is not None else "")
    return f"{head}data: {json.dumps(data)}\n\n".encode()
