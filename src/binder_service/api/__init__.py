"""HTTP faces of the service: routers only; the app factory assembles them.

The app includes each router itself, in this order (the BinderHub route, asked by every launch, first):
FastAPI matches a request through every level of included routers, so one router gathering the others
would cost each request a level more (a quarter of `/versions`' instructions, 6% of a cached build
request's: bench/instructions.py)."""

from fastapi import APIRouter

from . import binderhub, builds, images, login, meta

ROUTERS: tuple[APIRouter, ...] = (binderhub.router, builds.router, images.router, meta.router, login.router)

__all__ = ["ROUTERS"]
