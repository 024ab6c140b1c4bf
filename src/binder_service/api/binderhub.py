"""BinderHub's build API: `GET /build/{provider}/{spec}` streaming `data: {json}` events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..errors import BinderError, InvalidRequest
from .deps import BuilderDep, MetricsDep, ServiceDep, SettingsDep
from .sse import complete_stream, event_stream, failed_payload

log = logging.getLogger(__name__)
router = APIRouter(tags=["binderhub"])


def _raw_spec(request: Request, base_url: str, provider: str, decoded: str) -> str:
    # The git provider's spec holds a URL-escaped URL ("https%3A%2F%2F..."): the router has already
    # decoded it, so read the spec from the raw request path where the escaping is intact.
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        path = raw.decode("latin-1")
        prefix = f"{base_url}build/{quote(provider, safe='')}/"
        if path.startswith(prefix):
            return path[len(prefix) :]
    return decoded


@router.get(
    "/build/{provider}/{spec:path}",
    response_class=EventSourceResponse,
    summary="Build an image (BinderHub-compatible event stream)",
    responses={200: {"content": {"text/event-stream": {}}, "description": "`data: {json}` build events"}},
)
async def build(
    provider: str,
    spec: str,
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    user: BuilderDep,
    build_only: str = Query("false", description="Must be `true`: this service builds; JupyterHub launches."),
) -> Response:
    raw_spec = _raw_spec(request, settings.base_url, provider, spec)
    try:
        if build_only.lower() != "true":
            raise InvalidRequest(
                "this service only builds images: add ?build_only=true (JupyterHub launches the server)"
            )
        limit = 0 if user.admin else settings.max_builds_per_user
        found = await service.request_build(
            service.parse_binderhub(provider, raw_spec), requester=user.name, max_active=limit
        )
    except BinderError as e:
        metrics.requests.labels("binderhub", e.code).inc()
        return complete_stream([failed_payload(e)])
    metrics.requests.labels("binderhub", "cached" if found.cached else "build").inc()
    if found.done:
        # Nothing left to wait for (an existing image, most often): the whole stream in one response.
        return complete_stream([event.binderhub() for event in found.events()])

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for event in found.follow():
            yield ServerSentEvent(data=json.dumps(event.binderhub()))

    return event_stream(events(), keepalive=settings.keepalive_interval)
