"""The local world binder-service's demo, tests and benchmarks run against.

One Docker engine, one registry and the base images nothing here can pull, started once per machine
and reused by every later run (images cached in the engine's data root). Stdlib only, so it runs
before the project is installed.

    python scripts/world.py up      # start what is missing, print `export ...` lines
    python scripts/world.py up --hub  # ... and the single-user image JupyterHub tests spawn (cached)
    python scripts/world.py down    # stop the engine and the registry
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

WORLD_DIR = Path(os.environ.get("BINDER_WORLD_DIR", "/tmp/bsw"))
DOCKER_SOCK = WORLD_DIR / "docker.sock"
DOCKER_HOST = f"unix://{DOCKER_SOCK}"
REGISTRY_ADDR = os.environ.get("BINDER_WORLD_REGISTRY", "127.0.0.1:5055")
BUSYBOX_IMAGE = "binder-world/busybox:1"
# Debian bookworm with Python, from Debian's archive (debootstrap): the base of every Python image here.
PYTHON_IMAGE = "binder-world/python:1"
# JupyterHub's single-user server + JupyterLab in a venv, user jovyan (uid 1000): what DockerSpawner runs.
SINGLEUSER_IMAGE = "binder-world/singleuser:1"
DEBIAN_MIRROR = os.environ.get("BINDER_WORLD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# repo2docker's Docker buildpack runs through buildx; this docker CLI matches the engine's API.
DOCKER_CLI = shutil.which("docker", path="/usr/bin") or "docker"
# The world's engine gets a bridge of its own with a fixed address, never the shared `docker0`: a second
# engine on the machine would fight over it, and a `docker0` that dockerd creates itself reports no
# gateway. Containers reach the host (JupyterHub's API in the hub tests) at BRIDGE_ADDR.
BRIDGE = os.environ.get("BINDER_WORLD_BRIDGE", "bsw0")
BRIDGE_ADDR = os.environ.get("BINDER_WORLD_BRIDGE_ADDR", "10.213.37.1")
BRIDGE_PREFIX = 24


class WorldError(RuntimeError):
    """A part of the world could not be started."""


def _unix_get(sock: Path, path: str, timeout: float = 2.0) -> int:
    conn = http.client.HTTPConnection("localhost", timeout=timeout)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock))
    conn.sock = s
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def docker_alive(sock: Path = DOCKER_SOCK) -> bool:
    try:
        return _unix_get(sock, "/_ping") == 200
    except OSError:
        return False


def registry_alive(addr: str = REGISTRY_ADDR) -> bool:
    try:
        with urllib.request.urlopen(f"http://{addr}/v2/", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _wait(check: object, what: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise WorldError(f"{what} did not start within {timeout:.0f}s; log {log}:\n{tail}")


def _spawn(argv: list[str], log: Path) -> int:
    """Start a daemon detached from this process, so it outlives the test run that started it."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return proc.pid


def ensure_bridge() -> str:
    """Create the world's bridge with its fixed address (idempotent); returns that address."""
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False).returncode != 0:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True, capture_output=True)
    addrs = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", BRIDGE], capture_output=True, check=True, text=True
    ).stdout
    if f" {BRIDGE_ADDR}/" not in addrs:
        cidr = f"{BRIDGE_ADDR}/{BRIDGE_PREFIX}"
        subprocess.run(["ip", "addr", "add", cidr, "dev", BRIDGE], check=True, capture_output=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True, capture_output=True)
    return BRIDGE_ADDR


def ensure_docker() -> str:
    """Start our own dockerd (own socket, data root, pidfile and bridge) unless it already answers."""
    ensure_bridge()
    if docker_alive():
        return DOCKER_HOST
    WORLD_DIR.mkdir(parents=True, exist_ok=True)
    log = WORLD_DIR / "dockerd.log"
    pidfile = WORLD_DIR / "docker.pid"
    if pidfile.exists():  # a dead daemon leaves its pidfile behind and the next one refuses to start
        pidfile.unlink()
    if not shutil.which("dockerd"):
        raise WorldError("dockerd is not installed; run scripts/install-system.sh")
    _spawn(
        [
            "dockerd",
            "--host", DOCKER_HOST,
            "--data-root", str(WORLD_DIR / "docker-data"),
            "--exec-root", str(WORLD_DIR / "docker-exec"),
            "--pidfile", str(pidfile),
            "--bridge", BRIDGE,
        ],
        log,
    )  # fmt: skip
    _wait(docker_alive, "dockerd", log)
    return DOCKER_HOST


def ensure_registry() -> str:
    """Start a distribution v2 registry on loopback unless one already answers there."""
    if registry_alive():
        return REGISTRY_ADDR
    WORLD_DIR.mkdir(parents=True, exist_ok=True)
    cfg = WORLD_DIR / "registry.yml"
    cfg.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {WORLD_DIR / 'registry-data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {REGISTRY_ADDR}\n"
    )
    log = WORLD_DIR / "registry.log"
    _spawn(["docker-registry", "serve", str(cfg)], log)
    _wait(registry_alive, "registry", log)
    return REGISTRY_ADDR


def docker(*args: str, input: bytes | None = None) -> str:
    env = {**os.environ, "DOCKER_HOST": DOCKER_HOST}
    proc = subprocess.run(
        [DOCKER_CLI, *args], env=env, input=input, capture_output=True, check=False, timeout=600
    )
    if proc.returncode != 0:
        raise WorldError(f"docker {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def image_exists(name: str) -> bool:
    try:
        docker("image", "inspect", name)
    except WorldError:
        return False
    return True


def ensure_busybox_image() -> str:
    """A tiny base image FROM scratch with busybox: test repositories' Dockerfiles start FROM it."""
    if image_exists(BUSYBOX_IMAGE):
        return BUSYBOX_IMAGE
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise WorldError("/bin/busybox is missing; run scripts/install-system.sh")
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy(busybox, Path(ctx) / "busybox")
        (Path(ctx) / "Dockerfile").write_text(
            "FROM scratch\n"
            "COPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            "RUN mkdir -p /tmp /home /etc && chmod 1777 /tmp\n"
            'RUN echo "root:x:0:0::/root:/bin/sh" > /etc/passwd\n'
            'CMD ["/bin/sh"]\n'
        )
        # The classic builder keeps the image in the engine, where buildx's docker driver finds it.
        env = {**os.environ, "DOCKER_HOST": DOCKER_HOST, "DOCKER_BUILDKIT": "0"}
        subprocess.run(
            [DOCKER_CLI, "build", "-q", "-t", BUSYBOX_IMAGE, ctx],
            env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return BUSYBOX_IMAGE


def ensure_python_image() -> str:
    """Debian bookworm (minbase) + python3, venv, pip and CA certificates, made with debootstrap (~100 s)."""
    if image_exists(PYTHON_IMAGE):
        return PYTHON_IMAGE
    if not shutil.which("debootstrap"):
        raise WorldError("debootstrap is not installed; run scripts/install-system.sh")
    WORLD_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORLD_DIR, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        include = "--include=python3,python3-venv,python3-pip,ca-certificates"
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", include, "bookworm", str(rootfs), DEBIAN_MIRROR],
            capture_output=True, check=False, timeout=1200,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = proc.stdout.decode(errors="replace")[-2000:]
            raise WorldError(f"debootstrap failed ({proc.returncode}):\n{tail}")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            env = {**os.environ, "DOCKER_HOST": DOCKER_HOST}
            subprocess.run(
                [DOCKER_CLI, "import", "--change", 'CMD ["/bin/bash"]', "-", PYTHON_IMAGE],
                stdin=tar.stdout, env=env, check=True, capture_output=True, timeout=600,
            )  # fmt: skip
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait(60)
    return PYTHON_IMAGE


def ensure_singleuser_image() -> str:
    """FROM the Python image: a venv with jupyterhub + jupyterlab from PyPI, user jovyan uid 1000 (~85 s)."""
    if image_exists(SINGLEUSER_IMAGE):
        return SINGLEUSER_IMAGE
    ensure_python_image()
    with tempfile.TemporaryDirectory() as ctx:
        # Containers reach PyPI only when they trust the host's CA bundle: use it for the install and
        # delete it again (the bundle differs between machines; the image must not keep it).
        shutil.copy(CA_BUNDLE, Path(ctx) / "host-ca.crt")
        (Path(ctx) / "Dockerfile").write_text(
            f"FROM {PYTHON_IMAGE}\n"
            "ENV VIRTUAL_ENV=/opt/venv\n"
            "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
            "COPY host-ca.crt /tmp/host-ca.crt\n"
            "RUN python3 -m venv /opt/venv \\\n"
            " && PIP_CERT=/tmp/host-ca.crt pip install --no-cache-dir -q --disable-pip-version-check"
            " jupyterhub jupyterlab \\\n"
            " && rm /tmp/host-ca.crt\n"
            "RUN useradd -m -u 1000 -s /bin/bash jovyan\n"
            "USER 1000\n"
            "WORKDIR /home/jovyan\n"
            "ENV HOME=/home/jovyan SHELL=/bin/bash\n"
            "EXPOSE 8888\n"
            'CMD ["jupyterhub-singleuser"]\n'
        )
        env = {**os.environ, "DOCKER_HOST": DOCKER_HOST, "DOCKER_BUILDKIT": "0"}
        proc = subprocess.run(
            [DOCKER_CLI, "build", "-q", "-t", SINGLEUSER_IMAGE, ctx],
            env=env, capture_output=True, check=False, timeout=1800,
        )  # fmt: skip
        if proc.returncode != 0:
            raise WorldError(
                f"building {SINGLEUSER_IMAGE} failed:\n{proc.stderr.decode(errors='replace')[-3000:]}"
            )
    return SINGLEUSER_IMAGE


def up(*, hub: bool = False) -> dict[str, str]:
    """Everything the demo and the tests need; returns the environment that points at it.

    `hub`: also the single-user image the JupyterHub tests spawn (minutes the first time, then cached).
    """
    docker_host = ensure_docker()
    registry = ensure_registry()
    ensure_busybox_image()
    if hub:
        ensure_singleuser_image()
    return {"DOCKER_HOST": docker_host, "BINDER_WORLD_REGISTRY": registry}


def down() -> None:
    for pidfile in (WORLD_DIR / "docker.pid",):
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
    subprocess.run(["pkill", "-f", f"docker-registry serve {WORLD_DIR}"], check=False)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "up"
    try:
        if cmd == "up":
            for key, value in up(hub="--hub" in argv[2:]).items():
                print(f"export {key}={value}")
        elif cmd == "down":
            down()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except WorldError as e:
        print(f"world: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
