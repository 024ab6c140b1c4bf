"""FastAPI dependencies, named as Annotated aliases so handlers read as typed arguments."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from ..errors import Unauthorized
from ..metrics import Metrics
from ..service import BinderService
from ..settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_service(request: Request) -> BinderService:
    service: BinderService = request.app.state.service
    return service


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    # Only the header: a token in the query string would end up in access logs.
    return token.strip() if scheme.lower() in ("bearer", "token") and token.strip() else None


async def require_user(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> str | None:
    """The caller's name, checked against the static tokens when any are configured (else open: loopback)."""
    if not settings.api_tokens:
        return None
    token = _bearer(request)
    if token is None:
        raise Unauthorized("this service needs a token: Authorization: Bearer <token>")
    for index, allowed in enumerate(settings.api_tokens):
        if hmac.compare_digest(token.encode(), allowed.get_secret_value().encode()):
            return f"token-{index}"
    raise Unauthorized("invalid token")


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[BinderService, Depends(get_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
UserDep = Annotated[str | None, Depends(require_user)]
