"""BinderHub's build API: `GET /build/{provider}/{spec}` streaming `data: {json}` events."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from sse_starlette import EventSourceResponse
from starlette.convertors import PathConvertor, register_url_convertor

from ..errors import BinderError, InvalidRequest
from .deps import BuilderDep, ServiceDep
from .errors import BINDERHUB_ROUTE
from .models import ErrorBody
from .sse import complete_stream, event_stream, failed_payload

log = logging.getLogger(__name__)
router = APIRouter(tags=["binderhub"])


class _SpecConvertor(PathConvertor):
    """`:path`, newlines included: a spec with %0A must reach the handler (a `failed` event), not 404."""

    regex = "(?s:.*)"


register_url_convertor("binderhub_spec", _SpecConvertor())

# HTTP errors of this route for clients that do not ask for `text/event-stream`.
_REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": why}
    for status, why in {
        400: "A request the HTTP layer cannot parse (`invalid_request`)",
        401: "No token, or an invalid one (`unauthorized`)",
        403: "A token without a scope that allows building, or a cross-site cookie (`forbidden`)",
        404: "No such path, e.g. `/build/<provider>` without a spec (`not_found`)",
        413: "A request line and headers over 64 KiB (`input_too_large`)",
        429: "Past the per-user request rate (`too_many_requests`)",
        503: "JupyterHub, which identifies users, does not answer (`hub_unavailable`)",
    }.items()
}


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
    "/build/{provider}/{spec:binderhub_spec}",
    name=BINDERHUB_ROUTE,
    response_class=EventSourceResponse,
    summary="Build an image (BinderHub-compatible event stream)",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`data: {json}` build events. Errors before a build exists are one `failed` "
            "event; so are the refusals below when the request has `Accept: text/event-stream` "
            "(with `status_code` in the event).",
        },
        **_REFUSALS,
    },
)
async def build(
    provider: str,
    spec: str,
    request: Request,
    service: ServiceDep,
    user: BuilderDep,
    build_only: str = Query("false", description="Must be `true`: this service builds; JupyterHub launches."),
) -> Response:
    settings, metrics = service.settings, service.metrics
    raw_spec = _raw_spec(request, settings.base_url, provider, spec)
    try:
        if build_only.lower() != "true":
            raise InvalidRequest(
                "this service only builds images: add ?build_only=true (JupyterHub launches the server)"
            )
        found = await service.request_build(service.parse_binderhub(provider, raw_spec), user=user)
    except BinderError as e:
        metrics.requests.labels("binderhub", e.code).inc()
        return complete_stream([failed_payload(e)])
    metrics.requests.labels("binderhub", "cached" if found.cached else "build").inc()
    if found.done:
        # Nothing left to wait for (an existing image, most often): the whole stream in one response.
        return complete_stream([event.binderhub() for event in found.events()])
    return event_stream(found, wire="binderhub", settings=settings)
