"""Pydantic models of the native API (requests in, resources out)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..builds import Build, BuildStatus
from ..events import Phase


class ErrorBody(BaseModel):
    """Every error response: a stable machine-readable code and a message for people."""

    code: str = Field(examples=["ref_not_found"])
    message: str = Field(examples=["ref 'nope' not found in https://github.com/org/repo"])


class BuildCreate(BaseModel):
    """Ask for the image of a repository at a ref."""

    # Longer than `max_input_length`: 413 input_too_large from the provider (the schema says the limit).
    repo: str = Field(min_length=1, examples=["https://github.com/binder-examples/requirements"])
    ref: str = Field("HEAD", min_length=1, description="Branch, tag or commit.")
    provider: str | None = Field(
        None,
        max_length=64,
        description="Repository provider; default: detected from `repo` "
        "(a github.com URL: `gh`, gitlab.com: `gl`, gist.github.com: `gist`, anything else: `git`).",
    )


class EventPublic(BaseModel):
    id: int
    phase: Phase
    message: str
    image_name: str | None = None
    queue_position: int | None = None
    code: str | None = None


class BuildPublic(BaseModel):
    """A build: what it builds, where it is, and how it ended."""

    id: str
    status: BuildStatus
    phase: Phase = Field(description="Phase of the latest event.")
    image_name: str
    provider: str
    repo: str
    ref: str
    commit: str = Field(description="The immutable commit the ref resolved to.")
    cached: bool = Field(description="The image already existed; nothing was built.")
    queue_position: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorBody | None = None
    last_event_id: int
    events_url: str

    @classmethod
    def of(cls, build: Build, events_url: str) -> BuildPublic:
        error = (
            ErrorBody(code=build.error_code or "build_failed", message=build.error_message or "")
            if build.error_message
            else None
        )
        return cls(
            id=build.id,
            status=build.status,
            phase=build.phase,
            image_name=build.image_name,
            provider=build.repo.provider,
            repo=build.repo.build_slug,
            ref=build.repo.ref,
            commit=build.repo.commit,
            cached=build.cached,
            queue_position=build.queue_position,
            created_at=build.created_at,
            started_at=build.started_at,
            finished_at=build.finished_at,
            error=error,
            last_event_id=build.last_event_id,
            events_url=events_url,
        )


class BuildList(BaseModel):
    builds: list[BuildPublic]
