"""HTTP faces of the service: routers only; the app factory assembles them."""

from fastapi import APIRouter

from . import binderhub, builds, images, login, meta

router = APIRouter()
router.include_router(binderhub.router)
router.include_router(builds.router)
router.include_router(images.router)
router.include_router(meta.router)
router.include_router(login.router)

__all__ = ["router"]
