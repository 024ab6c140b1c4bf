"""Run the real app under a real uvicorn server in a thread, and read its event streams."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn
from binder_service_client import messages

from binder_service.app import create_app
from binder_service.builds import Executor
from binder_service.server import server_config
from binder_service.settings import Settings


@contextmanager
def running_service(
    settings: Settings,
    *,
    executor: Executor | None = None,
    port: int = 0,
    environ: dict[str, str] | None = None,
) -> Iterator[str]:
    """The service on loopback (a free port unless given); yields its base URL (with the settings' base_url).

    `environ` is the environment the app sees (default: this process's)."""
    env = dict(os.environ) if environ is None else environ
    own_state: Path | None = None
    if settings.state_dir is None:  # a build store of its own: no service sees another test's builds
        own_state = Path(tempfile.mkdtemp(prefix="bs-state-"))
        settings = settings.model_copy(update={"state_dir": own_state})
    app = create_app(settings, environ=env, executor=executor)
    # As `binder-service serve` runs it: uvicorn's parser refusals as JSON, stalled clients aborted.
    config = server_config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        send_timeout=settings.send_timeout,
        shutdown_grace=settings.shutdown_grace,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("service did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}{settings.base_url}"
    finally:
        server.should_exit = True
        thread.join(30)
        if own_state is not None and not thread.is_alive():  # made here, gone with the service
            shutil.rmtree(own_state, ignore_errors=True)


def spec(url: str, ref: str) -> str:
    """BinderHub's `<repo>/<ref>` spec for a git URL, each part quoted whole."""
    return f"{quote(url, safe='')}/{quote(ref, safe='')}"


def build_url(service: str, url: str, ref: str = "main", provider: str = "git") -> str:
    """The BinderHub face's build stream for `url` at `ref` (build only: no server is launched)."""
    return f"{service}build/{provider}/{spec(url, ref)}?build_only=true"


def sse_messages(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
    raw: list[str] | None = None,
    until: str | None = None,
) -> list[dict[str, Any]]:
    """Every `data:` message of an event stream (with its `id:` as "_id" when present), until it ends
    (or, with `until`, through the first message of that phase).

    Parsed by the clients' own parser (binder_service_client.sse), so the tests read streams as they do."""
    out: list[dict[str, Any]] = []
    hdrs = {"Accept": "text/event-stream", **(headers or {})}
    with httpx.stream("GET", url, headers=hdrs, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        if raw is not None:
            lines = _recorded(lines, raw)
        for message in messages(lines):
            event = message.json()
            if message.id is not None:
                event["_id"] = int(message.id)
            out.append(event)
            if until is not None and event.get("phase") == until:
                break
    return out


def _recorded(lines: Iterator[str], raw: list[str]) -> Iterator[str]:
    for line in lines:
        raw.append(line)
        yield line
