"""A real JupyterHub (with configurable-http-proxy from npm) in a subprocess, for authentication tests.

No spawner is used here: these hubs identify users and issue tokens and OAuth codes. Tests add users and
mint tokens through the hub's REST API with an admin service token (`Hub.admin`).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.net import free_port
from tests.support.waiting import wait_for_http

ROOT = Path(__file__).resolve().parents[2]
CHP = ROOT / ".cache" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"


@dataclass
class HubApi:
    """A running hub's addresses and its REST API, driven with an admin service token."""

    url: str  # the public URL, through the proxy
    api_url: str  # the hub's own API, e.g. http://127.0.0.1:8081/hub/api
    admin_token: str  # a service token allowed to manage users and tokens
    log: Path

    def api(self, method: str, path: str, *, timeout: float = 30, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        return httpx.request(method, self.api_url + path, headers=headers, timeout=timeout, **kwargs)

    def add_user(self, name: str) -> None:
        r = self.api("POST", f"/users/{name}")
        assert r.status_code in (201, 409), r.text

    def token(self, user: str, *, scopes: list[str] | None = None, expires_in: int | None = None) -> str:
        """A new API token of `user`, limited to `scopes` (default: all the user's own permissions)."""
        self.add_user(user)
        body: dict[str, Any] = {"note": "test token"}
        if scopes is not None:
            body["scopes"] = scopes
        if expires_in is not None:
            body["expires_in"] = expires_in
        r = self.api("POST", f"/users/{user}/tokens", json=body)
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token


@contextmanager
def running_hub(
    tmp: Path,
    *,
    services: list[dict[str, Any]],
    roles: list[dict[str, Any]],
    password: str = "pw",
) -> Iterator[HubApi]:
    """JupyterHub on loopback with DummyAuthenticator(`password`), the binder custom scopes, `services` and
    `roles`, plus an admin service `tester`. Stopped (hub and proxy) on exit."""
    if not CHP.exists():
        raise RuntimeError(f"{CHP} is missing: run scripts/bootstrap.sh dev")
    port, hub_port, proxy_api = free_port(), free_port(), free_port()
    admin_token = secrets.token_hex(16)
    services = [*services, {"name": "tester", "api_token": admin_token}]
    roles = [
        *roles,
        {"name": "tester", "scopes": ["admin:users", "tokens", "list:users"], "services": ["tester"]},
    ]
    config = tmp / "jupyterhub_config.py"
    config.write_text(
        f"""
import json
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{tmp}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.JupyterHub.pid_file = "{tmp}/hub.pid"
c.ConfigurableHTTPProxy.command = ["{CHP}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.pid_file = "{tmp}/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.JupyterHub.custom_scopes = {{
    "custom:binder:build": {{"description": "Build images with binder-service"}},
    "custom:binder:admin": {{
        "description": "See and cancel every build", "subscopes": ["custom:binder:build"]
    }},
}}
c.JupyterHub.services = json.loads({json.dumps(json.dumps(services))})
c.JupyterHub.load_roles = json.loads({json.dumps(json.dumps(roles))})
"""
    )
    log = tmp / "hub.log"
    env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    hub = HubApi(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{hub_port}/hub/api", admin_token, log)
    try:
        wait_for_http(f"{hub.url}/hub/api", proc=proc, log=log)
        yield hub
    finally:
        proc.terminate()  # the hub stops the proxy it started
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
