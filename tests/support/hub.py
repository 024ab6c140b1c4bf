"""A real JupyterHub that spawns with DockerSpawner on the world's dockerd and builds with binder-service.

One process tree: JupyterHub (DummyAuthenticator with a password), the configurable-http-proxy it starts
(from npm, in .cache/node) and binder-service as a managed hub service, registered with
`binder_service_hub.register` exactly as an operator would. Single-user servers run from
`binder-world/singleuser:1` (or an image built from a repository) on the Docker bridge network: the hub
listens on the world bridge's fixed address (`world.BRIDGE_ADDR`), so containers reach its API; the
proxy reaches the containers through ports published on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from binder_service_client import messages

import world
from tests.support.jupyterhub import HubApi
from tests.support.net import free_port
from tests.support.waiting import wait_for_http, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHP = ROOT / ".cache" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
VENV_BIN = Path(sys.executable).parent
SERVICE = "binder"


@dataclass
class Hub(HubApi):
    """`HubApi` plus what spawning tests need: the login password and the containers' name prefix."""

    password: str = ""
    container_prefix: str = ""

    @property
    def service_url(self) -> str:
        """binder-service through the proxy, as browsers and the fancy-profiles client reach it."""
        return f"{self.url}/services/{SERVICE}/"

    def user_token(self, name: str, *, scopes: list[str] | None = None) -> str:
        """A new API token of `name` (as a user would create on the hub's token page)."""
        return self.token(name, scopes=scopes, expires_in=3600)

    def tokens(self, name: str) -> list[dict[str, Any]]:
        r = self.api("GET", f"/users/{name}/tokens")
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["api_tokens"]
        return found

    def server(self, name: str) -> dict[str, Any] | None:
        """The user's default server as the hub reports it (None when there is none)."""
        r = self.api("GET", f"/users/{name}")
        assert r.status_code == 200, r.text
        server: dict[str, Any] | None = r.json().get("servers", {}).get("")
        return server

    def spawn(self, name: str, user_options: dict[str, Any]) -> httpx.Response:
        """Ask for the user's server through the REST API (returns at once: 201 or 202 pending)."""
        self.add_user(name)
        return self.api("POST", f"/users/{name}/server", json=user_options)

    def progress(self, name: str, *, timeout: float = 600) -> list[dict[str, Any]]:
        """Every event of the spawn-pending page's stream (the hub's progress API) until it ends."""
        headers = {"Authorization": f"token {self.admin_token}"}
        url = f"{self.api_url}/users/{name}/server/progress"

        def follow() -> list[dict[str, Any]] | None:
            with httpx.stream("GET", url, headers=headers, timeout=timeout) as r:
                if r.status_code == 400 and b"is not starting" in r.read():
                    # JupyterHub's own window: a spawn that just failed clears "pending" before its
                    # future holds the error (while the hub stops the server). Ask again, as the
                    # spawn-pending page does when its stream errors.
                    return None
                assert r.status_code == 200, r.read()
                return [message.json() for message in messages(r.iter_lines())]

        return wait_until(follow, timeout=30, interval=0.2, what=f"{name}'s spawn progress")

    def wait_stopped(self, name: str, *, timeout: float = 60) -> None:
        wait_until(
            lambda: self.server(name) is None, timeout=timeout, interval=0.3, what=f"{name}'s server to stop"
        )

    def stop(self, name: str) -> None:
        r = self.api("DELETE", f"/users/{name}/server", timeout=60)
        assert r.status_code in (202, 204, 400), r.text  # 400: not running
        self.wait_stopped(name)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def service_builds(self) -> list[dict[str, Any]]:
        """Every build binder-service (the hub's service) knows, as its admin sees them."""
        r = httpx.get(
            f"{self.service_url}api/v1/builds",
            headers={"Authorization": f"token {self.admin_token}"},
            params={"limit": 1000},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        builds: list[dict[str, Any]] = r.json()["builds"]
        return builds


@contextlib.contextmanager
def running_hub(
    tmp: Path,
    *,
    world_env: dict[str, str],
    image_prefix: str,
    container_prefix: str,
    service_env: dict[str, str] | None = None,
    extra_config: str = "",
    hub_env: dict[str, str] | None = None,
) -> Iterator[Hub]:
    """JupyterHub + proxy + binder-service (managed) + BinderDockerSpawner; all stopped on exit.

    `extra_config` is appended to the hub's `jupyterhub_config.py` (later settings win: another spawner);
    `hub_env` is added to the hub process's environment.
    """
    if not CHP.exists():
        raise RuntimeError(f"{CHP} is missing: run scripts/bootstrap.sh dev")
    public, proxy_api, hub_port, service_port = free_port(), free_port(), free_port(), free_port()
    # The world's engine runs on a bridge of its own with a fixed address: the host as containers see it.
    bridge = world.ensure_bridge()
    admin_token, password = secrets.token_hex(16), secrets.token_hex(8)
    environment = {
        "DOCKER_HOST": world_env["DOCKER_HOST"],
        "BINDER_SERVICE_REGISTRY_URL": f"http://{world_env['BINDER_WORLD_REGISTRY']}",
        "BINDER_SERVICE_IMAGE_PREFIX": image_prefix,
        "BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS": "true",
        "BINDER_SERVICE_BUILD_TIMEOUT": "600",
        "BINDER_SERVICE_KEEPALIVE_INTERVAL": "2",
        "BINDER_SERVICE_STATE_DIR": str(tmp / "binder-state"),  # the build store of this hub's service
        **(service_env or {}),
    }
    settings: dict[str, Any] = {
        "public": f"http://127.0.0.1:{public}",
        "proxy_api": f"http://127.0.0.1:{proxy_api}",
        "hub_bind": f"http://{bridge}:{hub_port}",
        "service_url": f"http://127.0.0.1:{service_port}",
        "service_command": [str(VENV_BIN / "binder-service"), "serve"],
        "service_env": environment,
        "chp": str(CHP),
        "tmp": str(tmp),
        "password": password,
        "admin_token": admin_token,
        "image": world.SINGLEUSER_IMAGE,
        "container_prefix": container_prefix,
    }
    config = tmp / "jupyterhub_config.py"
    config.write_text(_CONFIG.replace("@SETTINGS@", repr(json.dumps(settings))) + extra_config)
    log = tmp / "hub.log"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DOCKER_HOST": world_env["DOCKER_HOST"],
        "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16),
        **(hub_env or {}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    hub = Hub(
        url=settings["public"],
        api_url=f"http://{bridge}:{hub_port}/hub/api",
        admin_token=admin_token,
        password=password,
        log=log,
        container_prefix=container_prefix,
    )
    try:
        _wait_up(proc, hub)
        yield hub
    finally:
        proc.terminate()  # the hub stops its proxy, its managed service and (cleanup_servers) the servers
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _remove_containers(container_prefix)


def _wait_up(proc: subprocess.Popen[bytes], hub: Hub, timeout: float = 90) -> None:
    """Until the hub answers through the proxy and binder-service answers through the hub's route."""
    for url in (f"{hub.url}/hub/api", f"{hub.service_url}health"):
        wait_for_http(url, proc=proc, log=hub.log, timeout=timeout)


def _remove_containers(prefix: str) -> None:
    names = world.docker("ps", "-a", "--filter", f"name=^{prefix}-", "--format", "{{.Names}}").split()
    for name in names:
        with contextlib.suppress(world.WorldError):
            world.docker("rm", "-f", name)


# The hub's configuration, as an operator writes it: the settings come in as one JSON string.
_CONFIG = """
import json

from binder_service_hub import register

s = json.loads(@SETTINGS@)
c = get_config()  # noqa: F821

c.JupyterHub.bind_url = s["public"]
c.JupyterHub.hub_bind_url = s["hub_bind"]
c.JupyterHub.db_url = "sqlite:///" + s["tmp"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = s["tmp"] + "/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = s["tmp"] + "/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.log_level = "INFO"
# Every spawn goes to the spawn-pending page (and the API answers 202) at once, builds included.
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
c.ConfigurableHTTPProxy.command = [s["chp"]]
c.ConfigurableHTTPProxy.api_url = s["proxy_api"]
c.ConfigurableHTTPProxy.pid_file = s["tmp"] + "/proxy.pid"

c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = s["password"]
c.Authenticator.allow_all = True

# An admin service for the tests (creates users, starts servers, reads tokens), and binder admin.
c.JupyterHub.services = [{"name": "tester", "api_token": s["admin_token"]}]

register(
    c,
    name="binder",
    url=s["service_url"],
    command=s["service_command"],
    environment=s["service_env"],
)
c.JupyterHub.load_roles.append(
    {
        "name": "tester",
        "scopes": [
            "admin:users", "admin:servers", "tokens", "list:users", "read:users",
            "access:services!service=binder", "custom:binder:admin",
        ],
        "services": ["tester"],
    }
)

c.JupyterHub.spawner_class = "binder-docker"
c.DockerSpawner.image = s["image"]
c.DockerSpawner.prefix = s["container_prefix"]
c.DockerSpawner.remove = True
c.DockerSpawner.host_ip = "127.0.0.1"
c.DockerSpawner.pull_policy = "ifnotpresent"
# Any image by name through user_options: how the fancy-profiles flow hands over a built image here.
c.DockerSpawner.allowed_images = "*"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.default_url = "/lab"
"""
