"""`binder-service serve` as a real process (for signals: SIGTERM, SIGINT, SIGKILL), on a free port."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from tests.support.net import free_port
from tests.support.waiting import wait_until


@contextlib.contextmanager
def serve_process(
    env: dict[str, str],
    log: Path,
    *,
    graceful: bool = False,
    cwd: Path | None = None,
    command: Sequence[str] = (sys.executable, "-m", "binder_service.cli", "serve"),
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The service (`command`) with exactly `env` (plus a free port unless `env` names one: a restart keeps
    its URL); yields the process and its URL (with BINDER_SERVICE_BASE_URL's path, ending in "/"). At the
    end it is killed, or with `graceful` stopped with SIGTERM (killed if it has not stopped in 30 s)."""
    port = int(env.get("BINDER_SERVICE_PORT") or free_port())
    env = {**env, "BINDER_SERVICE_PORT": str(port)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = env.get("BINDER_SERVICE_BASE_URL", "").strip("/")
    url = f"http://127.0.0.1:{port}/" + (f"{base}/" if base else "")

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"binder-service serve exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            return httpx.get(f"{url}versions", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, timeout=120, what="binder-service serve")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
