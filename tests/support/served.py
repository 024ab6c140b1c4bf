"""`binder-service serve` for the API's edge tests: one process per session, under a base URL, with a
token, a CORS origin and a small input limit. It needs no Docker engine: every request those tests send
is refused or answered before a build."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port
from tests.support.serve_process import serve_process

TOKEN = "bad-input-token"
ALLOWED_ORIGIN = "http://allowed.test:8000"
MAX_INPUT = 300


@dataclass(frozen=True)
class Served:
    url: str  # with the base URL, ending in "/"
    host: str
    port: int

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {TOKEN}"}


@contextlib.contextmanager
def served_in(work: Path) -> Iterator[Served]:
    """The service as above, its state and log in `work`; stopped with SIGTERM at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_SERVICE_", "JUPYTERHUB_"))}
    env.update(
        BINDER_SERVICE_HOST="127.0.0.1",
        BINDER_SERVICE_PORT=str(port := free_port()),
        BINDER_SERVICE_API_TOKENS=TOKEN,
        BINDER_SERVICE_CORS_ALLOW_ORIGINS=ALLOWED_ORIGIN,
        BINDER_SERVICE_MAX_INPUT_LENGTH=str(MAX_INPUT),
        BINDER_SERVICE_BASE_URL="/services/binder/",
        BINDER_SERVICE_DOCKER_HOST=f"unix://{work}/no-engine.sock",  # never reached
        BINDER_SERVICE_STATE_DIR=str(work / "state"),
    )
    with serve_process(env, work / "serve.log", graceful=True, cwd=work) as (_, url):
        yield Served(url=url, host="127.0.0.1", port=port)
