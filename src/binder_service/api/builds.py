"""The native, versioned builds API: create, read, list, stream (resumable), cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import PlainTextResponse, StreamingResponse
from sse_starlette import EventSourceResponse

from ..builds import Build, BuildStatus
from ..builds.recording import follow_stored
from ..errors import BinderError, BuildShared, StoreUnavailable
from .deps import BuilderDep, ServiceDep, UserDep
from .models import BuildCreate, BuildList, BuildPublic, ErrorBody, check_create
from .sse import event_stream

router = APIRouter(prefix="/api/v1/builds", tags=["builds"])
# Error bodies are JSON on every route (api/openapi.py documents them so, whatever the route's own type).
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 422, 502, 503, 504)
}


def _public(request: Request, build: Build) -> BuildPublic:
    return BuildPublic.of(build, str(request.url_for("build_events", build_id=build.id).path))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": BuildPublic, "description": "The image exists or is already being built"},
        **_ERRORS,
        400: {
            "model": ErrorBody,
            "description": "The provider refuses the repository or ref (`invalid_spec`), e.g. a URL that "
            "does not parse, or a ref with whitespace or unprintable characters",
        },
        404: {
            "model": ErrorBody,
            "description": "No such provider, repository or ref (`unknown_provider`, `repo_not_found`, "
            "`ref_not_found`)",
        },
        429: {"model": ErrorBody, "description": "Per-user limits, or the repository host's rate limit"},
        502: {
            "model": ErrorBody,
            "description": "The repository's host cannot be reached or answers wrongly (`repo_unreachable`, "
            "`upstream_error`)",
        },
        504: {
            "model": ErrorBody,
            "description": "The repository's host did not answer in time (`upstream_timeout`)",
        },
    },
)
async def create_build(
    body: BuildCreate,
    request: Request,
    response: Response,
    service: ServiceDep,
    user: BuilderDep,
) -> BuildPublic:
    """Resolve the ref and return the build of its image: new (201), or one that is running or done (200)."""
    settings, metrics = service.settings, service.metrics
    check_create(body, settings.max_input_length)
    try:
        spec = service.parse_native(body.repo, body.ref, body.provider)
        build = await service.request_build(spec, user=user)
    except BinderError as e:
        metrics.requests.labels("native", e.code).inc()
        raise
    fresh = build.requests == 1 and not build.cached
    response.status_code = status.HTTP_201_CREATED if fresh else status.HTTP_200_OK
    metrics.requests.labels("native", "cached" if build.cached else "build").inc()
    return _public(request, build)


@router.get("", responses=_ERRORS)
async def list_builds(
    request: Request,
    service: ServiceDep,
    user: UserDep,
    status: BuildStatus | None = None,
    cached: Annotated[bool, Query(description="Include answers from existing images.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> BuildList:
    """Recent builds, newest first: your own (admins: everyone's)."""
    if not user.admin and user.name is None:
        return BuildList(builds=[])
    builds = await service.builds.history.search(
        status=status,
        cached=cached,
        limit=limit,
        requester=None if user.admin else user.name,
        visible=user.may_see,
    )
    return BuildList(builds=[_public(request, b) for b in builds])


@router.get("/{build_id}", responses=_ERRORS)
async def get_build(build_id: str, request: Request, service: ServiceDep, user: UserDep) -> BuildPublic:
    return _public(request, await service.builds.find_for(user, build_id))


@router.post(
    "/{build_id}/cancel",
    responses={
        **_ERRORS,
        409: {"model": ErrorBody, "description": "Other users wait for this build too (`build_shared`)"},
    },
)
async def cancel_build(build_id: str, request: Request, service: ServiceDep, user: UserDep) -> BuildPublic:
    """Stop a queued or running build (every watcher gets a `failed` event with code `build_cancelled`).

    A build other users asked for too is only stopped by an admin (`build_shared` otherwise).
    """
    build = await service.builds.find_for(user, build_id)
    if not user.admin and not build.done and build.requesters - {user.name}:
        raise BuildShared("other users are waiting for this build too; it keeps running")
    if not service.builds.holds(build):  # finished, or another replica's: asked to stop it
        await service.builds.cancel_elsewhere(build)
        return _public(request, build)
    return _public(request, await service.builds.cancel(build_id))


@router.get(
    "/{build_id}/events",
    name="build_events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Build events with `id:`"},
        204: {
            "description": "The build is over and nothing is left after `Last-Event-ID`: stop reconnecting"
        },
        **_ERRORS,
    },
)
async def build_events(
    build_id: str,
    service: ServiceDep,
    user: UserDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, description="Replay events after this id.")] = None,
) -> Response:
    """The build's events as SSE, each with an `id:`.

    Reconnect with `Last-Event-ID` (or `?after=`) to get exactly the events you missed.
    """
    settings = service.settings
    build = await service.builds.find_for(user, build_id)
    start = after if after is not None else _event_id(last_event_id)
    if build.done and start >= build.last_event_id:
        # An EventSource reconnects after every stream end; 204 is its signal to stop for good.
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    recorder = service.builds.recorder
    if service.builds.holds(build) or recorder is None:
        return event_stream(build, wire="native", settings=settings, after=start)
    store = recorder.store
    return event_stream(  # finished before a restart, or run by another replica: from the store
        build,
        wire="native",
        settings=settings,
        after=start,
        follow=lambda after, stopped: follow_stored(
            store, build_id, after, stopped=stopped, build_timeout=settings.build_timeout
        ),
    )


@router.get(
    "/{build_id}/log",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "The build's log"}, **_ERRORS},
)
async def build_log(build_id: str, service: ServiceDep, user: UserDep) -> Response:
    """The build's log as plain text: every event's message, in order (also of finished builds)."""
    build = await service.builds.find_for(user, build_id)
    recorder = service.builds.recorder
    if recorder is None:
        return PlainTextResponse("".join(e.message for e in build.events()))
    store = recorder.store
    try:
        async with asyncio.timeout(store.timeout):
            await store.flush()  # what this process emitted is in the store before it is read
    except TimeoutError:
        raise StoreUnavailable("the build store did not answer; try again shortly") from None
    pages = store.log_text(build.id)
    first = await anext(pages, "")  # a store error now is a JSON error, not a broken response

    async def text() -> AsyncIterator[str]:
        yield first
        async for page in pages:
            yield page

    return StreamingResponse(text(), media_type="text/plain; charset=utf-8")


def _event_id(header: str | None) -> int:
    try:
        return max(int(header or 0), 0)
    except ValueError:
        return 0
