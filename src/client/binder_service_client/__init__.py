"""The client of binder-service's native API, shared by the service's CLI, the hub's spawner and the tests.

httpx and the standard library only: it is its own distribution (`binder-service-client`) so that
neither side depends on the other (the service never on JupyterHub, the hub never on FastAPI).
"""

from __future__ import annotations

from .client import FINAL_PHASES, BinderServiceError, BuildClient
from .sse import Message, SSEParser, amessages, messages

__version__ = "0.1.0"

__all__ = [
    "FINAL_PHASES",
    "BinderServiceError",
    "BuildClient",
    "Message",
    "SSEParser",
    "amessages",
    "messages",
]
