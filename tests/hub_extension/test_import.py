"""binder_service_hub goes into the hub image: it must not pull in FastAPI, the service, optional spawners."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys
import binder_service_hub
loaded = {m: m in sys.modules for m in ("fastapi", "starlette", "pydantic", "binder_service",
                                        "dockerspawner", "kubespawner")}
from binder_service_hub import BinderDockerSpawner
loaded["dockerspawner_after"] = "dockerspawner" in sys.modules
loaded["kubespawner_after"] = "kubespawner" in sys.modules
print(json.dumps(loaded))
"""


def test_import_pulls_in_neither_fastapi_nor_the_service() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    assert loaded == {
        "fastapi": False,
        "starlette": False,
        "pydantic": False,
        "binder_service": False,
        "dockerspawner": False,  # imported only when BinderDockerSpawner is asked for
        "kubespawner": False,
        "dockerspawner_after": True,
        "kubespawner_after": False,
    }


def test_spawners_are_registered_as_jupyterhub_entry_points() -> None:
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="jupyterhub.spawners")}
    assert found["binder-docker"] == "binder_service_hub.docker:BinderDockerSpawner"
    assert found["binder-kubernetes"] == "binder_service_hub.kubernetes:BinderKubeSpawner"
