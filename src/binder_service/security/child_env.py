"""The one environment every subprocess the service starts gets (git, ssh, repo2docker).

The service's own configuration (`BINDER_SERVICE_*`: API tokens, registry and git credentials) and
JupyterHub's (`JUPYTERHUB_*`: the service's hub API token) never reach a child: a child may run code
from a repository, print its environment into a build log, or pass it on to its own children.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PRIVATE_PREFIXES", "child_environ"]

PRIVATE_PREFIXES = ("BINDER_SERVICE_", "JUPYTERHUB_")


def child_environ(environ: Mapping[str, str], **extra: str) -> dict[str, str]:
    """`environ` without the service's private variables, plus `extra`."""
    env = {k: v for k, v in environ.items() if not k.upper().startswith(PRIVATE_PREFIXES)}
    env.update(extra)
    return env
