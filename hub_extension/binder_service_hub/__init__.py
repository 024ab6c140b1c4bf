"""The JupyterHub side of binder-service: register the service, and spawners that build from a repository.

Names are imported on first use, so dockerspawner and kubespawner stay optional. The event-stream
client the spawner uses is binder-service-client's (`binder_service_client`, httpx only), shared with
binder-service's CLI; `BuildClient` and `BinderServiceError` are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Eager: the submodule `register` would otherwise shadow the function of that name. traitlets only.
from .register import ADMIN_SCOPE, BUILD_SCOPE, register

if TYPE_CHECKING:
    from binder_service_client import BinderServiceError, BuildClient

    from .docker import BinderDockerSpawner
    from .form import BuildRequest, InvalidBuildRequest
    from .kubernetes import BinderKubeSpawner
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
    "BinderServiceError": "binder_service_client",
    "BuildClient": "binder_service_client",
    "BuildFailed": "binder_service_hub.spawner",
    "BuildFromRepoMixin": "binder_service_hub.spawner",
    "BuildRequest": "binder_service_hub.form",
    "InvalidBuildRequest": "binder_service_hub.form",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
