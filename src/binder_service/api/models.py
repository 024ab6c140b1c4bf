"""Pydantic models of the native API (requests in, resources out)."""

from __future__ import annotations

import re
from datetime import datetime

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from ..builds import Build, BuildStatus
from ..events import Phase
from ..providers.git.provider import REF_PATTERN


class ErrorBody(BaseModel):
    """Every error response: a stable machine-readable code and a message for people."""

    code: str = Field(examples=["ref_not_found"])
    message: str = Field(examples=["ref 'nope' not found in https://github.com/org/repo"])


class BuildCreate(BaseModel):
    """Ask for the image of a repository at a ref."""

    # The schema also says `maxLength` (max_input_length) for both and the ref's `pattern` (api/openapi.py):
    # both configured or git's, so checked by `check_create`, with the 422 of every other schema failure.
    repo: str = Field(min_length=1, examples=["https://github.com/binder-examples/requirements"])
    ref: str = Field(
        "HEAD",
        min_length=1,
        description="Branch, tag or commit: a name git accepts (`git check-ref-format`'s rules) that does "
        "not start with `-`.",
    )
    provider: str | None = Field(
        None,
        max_length=64,
        description="Repository provider; default: detected from `repo` "
        "(a github.com URL: `gh`, gitlab.com: `gl`, gist.github.com: `gist`, anything else: `git`).",
    )


def check_create(body: BuildCreate, max_length: int) -> None:
    """What the schema says of `repo` and `ref` beyond the model's own checks: a request it rules out is
    refused 422 `invalid_request`, as every schema failure is (not 413 or 400 from a provider later)."""
    errors: list[dict[str, object]] = [
        {"type": "string_too_long", "loc": ("body", name), "msg": f"longer than {max_length} characters"}
        for name, value in (("repo", body.repo), ("ref", body.ref))
        if len(value) > max_length
    ]
    if len(body.ref) <= max_length and re.fullmatch(REF_PATTERN, body.ref) is None:
        errors.append(
            {
                "type": "string_pattern_mismatch",
                "loc": ("body", "ref"),
                "msg": f"{body.ref[:100]!r} is not a ref git accepts, or starts with '-'",
            }
        )
    if errors:
        raise RequestValidationError(errors)


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
