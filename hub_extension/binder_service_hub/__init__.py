"""The JupyterHub side of binder-service: register the service, and spawners that build from a repository.

`BinderDockerSpawner` and `BinderKubeSpawner` are imported on first use, so dockerspawner and
kubespawner stay optional.
"""

from __future__ import annotations

from typing import Any

from .client import BinderServiceError, BuildClient
from .form import BuildRequest, InvalidBuildRequest
from .register import ADMIN_SCOPE, BUILD_SCOPE, register
from .spawner import BuildFailed, BuildFromRepoMixin

__version__ = "0.1.0"

__all__ = [
    "ADMIN_SCOPE",
    "BUILD_SCOPE",
    "BinderDockerSpawner",
    "BinderKubeSpawner",
    "BinderServiceError",
    "BuildClient",
    "BuildFailed",
    "BuildFromRepoMixin",
    "BuildRequest",
    "InvalidBuildRequest",
    "register",
]

_LAZY = {
    "BinderDockerSpawner": "binder_service_hub.docker",
    "BinderKubeSpawner": "binder_service_hub.kubernetes",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
