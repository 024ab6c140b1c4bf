"""FastAPI dependencies, named as Annotated aliases so handlers read as typed arguments.

Each dependency costs a request ~20 us of FastAPI's machinery (~70k instructions: bench/instructions.py),
so the native build handler takes two: the service (which holds settings and metrics) and the caller. The
BinderHub build route, which every launch asks first, takes none: it calls `get_builder` itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..admission import Admission
from ..auth import Authenticator, Identity
from ..images.admin import ImageAdmin
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


async def get_identity(request: Request) -> Identity:
    """The caller (401 without a valid token, 403 without the scope, a login redirect for a browser)."""
    auth: Authenticator = request.app.state.auth
    return await auth.identify(request)


async def get_builder(request: Request) -> Identity:
    """The caller of a request that may start a build: also within their request rate."""
    identity = await get_identity(request)  # called, not a sub-dependency: one dependency less
    admission: Admission = request.app.state.admission
    await admission.check_rate(identity)
    return identity


async def get_images(request: Request) -> ImageAdmin:
    images: ImageAdmin = request.app.state.image_admin
    return images


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[BinderService, Depends(get_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
UserDep = Annotated[Identity, Depends(get_identity)]
BuilderDep = Annotated[Identity, Depends(get_builder)]
ImagesDep = Annotated[ImageAdmin, Depends(get_images)]
