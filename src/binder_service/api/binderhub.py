"""BinderHub's build API: `GET /build/{provider}/{spec}` streaming `data: {json}` events."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse
from starlette.convertors import PathConvertor, register_url_convertor

from ..errors import BinderError, InvalidRequest
from ..events import sse_message
from ..service import BinderService
from .deps import get_builder
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


# The route's inputs, documented here because the handler reads them from the request itself: as FastAPI
# parameters and dependencies they cost every cached request ~10% of its instructions
# (bench/instructions.py: 2.76 -> 2.47 M), and this is the route every launch asks first.
_PARAMETERS: list[dict[str, Any]] = [
    {"name": "provider", "in": "path", "required": True, "schema": {"type": "string", "title": "Provider"}},
    {"name": "spec", "in": "path", "required": True, "schema": {"type": "string", "title": "Spec"}},
    {
        "name": "build_only",
        "in": "query",
        "required": False,
        "description": "Must be `true`: this service builds; JupyterHub launches.",
        "schema": {"type": "string", "default": "false", "title": "Build Only"},
    },
]


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
    openapi_extra={"parameters": _PARAMETERS},
)
async def build(request: Request) -> Response:
    service: BinderService = request.app.state.service
    user = await get_builder(request)  # 401/403/429 as JSON or a `failed` event (api/errors.py)
    settings, metrics = service.settings, service.metrics
    provider, spec = request.path_params["provider"], request.path_params["spec"]
    raw_spec = _raw_spec(request, settings.base_url, provider, spec)
    try:
        if request.query_params.get("build_only", "false").lower() != "true":
            raise InvalidRequest(
                "this service only builds images: add ?build_only=true (JupyterHub launches the server)"
            )
        found = await service.request_build(service.parse_binderhub(provider, raw_spec), user=user)
    except BinderError as e:
        metrics.requests.labels("binderhub", e.code).inc()
        return complete_stream([sse_message(failed_payload(e))])
    metrics.requests.labels("binderhub", "cached" if found.cached else "build").inc()
    if found.done:
        # Nothing left to wait for (an existing image, most often): the whole stream in one response.
        return complete_stream([event.binderhub_sse() for event in found.events()])
    return event_stream(found, wire="binderhub", settings=settings)
