"""`binder-service serve` itself, as a subprocess: uvicorn configured exactly as in production.

It needs no Docker engine: every request these tests send is refused or answered before a build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.waiting import wait_for_http

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


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work: Path = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_SERVICE_", "JUPYTERHUB_"))}
    env.update(
        BINDER_SERVICE_HOST="127.0.0.1",
        BINDER_SERVICE_PORT=str(port),
        BINDER_SERVICE_API_TOKENS=TOKEN,
        BINDER_SERVICE_CORS_ALLOW_ORIGINS=ALLOWED_ORIGIN,
        BINDER_SERVICE_MAX_INPUT_LENGTH=str(MAX_INPUT),
        BINDER_SERVICE_BASE_URL="/services/binder/",
        BINDER_SERVICE_DOCKER_HOST=f"unix://{work}/no-engine.sock",  # never reached
        BINDER_SERVICE_STATE_DIR=str(work / "state"),
    )
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "binder_service.cli", "serve"],
        env=env,
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/services/binder/"
    try:
        wait_for_http(url + "versions", proc=proc, log=work / "serve.log")
        yield Served(url=url, host="127.0.0.1", port=port)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
