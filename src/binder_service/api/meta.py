"""Service-level endpoints BinderHub clients and operators expect: versions, health, metrics, providers."""

from __future__ import annotations

import asyncio
import functools
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from .. import __version__
from ..errors import BinderError
from ..metrics import CONTENT_TYPE
from .deps import MetricsDep, ServiceDep

router = APIRouter(tags=["service"])


class HealthCheck(BaseModel):
    service: str
    ok: bool
    code: str | None = None
    message: str | None = None


class HealthReport(BaseModel):
    """`/health`'s answer, with 200 and with 503 alike."""

    ok: bool
    checks: list[HealthCheck]


@functools.cache  # read once: a lookup scans the installed distributions (~1.8M instructions)
def _repo2docker_version() -> str:
    try:
        return version("jupyter-repo2docker")
    except PackageNotFoundError:
        return "unknown"


@router.get("/versions")
async def versions() -> dict[str, Any]:
    """Versions, in BinderHub's shape (`builder_info`, `binderhub`) plus our own name."""
    return {
        "builder_info": {"repo2docker-version": _repo2docker_version()},
        "binderhub": __version__,
        "binder-service": __version__,
    }


@router.get(
    "/health",
    responses={
        200: {"model": HealthReport, "description": "Every dependency answers"},
        503: {"model": HealthReport, "description": "A dependency is down (its check says which and why)"},
    },
)
async def health(request: Request) -> JSONResponse:
    """Checks the Docker engine and the registry (or local image store); 503 when any is down."""
    checks: list[tuple[str, Any]] = request.app.state.health_checks

    async def run(name: str, check: Any) -> dict[str, Any]:
        try:
            await check()
        except BinderError as e:
            return {"service": name, "ok": False, "code": e.code, "message": e.message}
        return {"service": name, "ok": True}

    results = await asyncio.gather(*(run(name, check) for name, check in checks))
    ok = all(r["ok"] for r in results)
    return JSONResponse({"ok": ok, "checks": results}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)


@router.get("/api/repoproviders")
async def repoproviders(service: ServiceDep) -> list[dict[str, Any]]:
    """The enabled repository providers, with display metadata for front ends."""
    return [p.metadata() for p in service.providers]
