"""A second, empty Docker engine: "a node that never saw this repository".

Its own data root, exec root, socket and bridge (two engines must not share `docker0`); it can pull
only from the loopback registry, so base images are pushed there first (`registry_base_image`).
Used by the layer-cache and disk-budget tests and by bench/layer_cache.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import world
from tests.support.waiting import wait_until

BRIDGE = "bswfresh0"  # at most 15 characters
BRIDGE_ADDR = "10.213.40.1"


def _bridge() -> None:
    def ip(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)

    if ip("link", "show", BRIDGE).returncode != 0:
        ip("link", "add", BRIDGE, "type", "bridge")
    if f" {BRIDGE_ADDR}/" not in ip("-4", "-o", "addr", "show", "dev", BRIDGE).stdout:
        ip("addr", "add", f"{BRIDGE_ADDR}/24", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


@contextlib.contextmanager
def fresh_engine(root: Path) -> Iterator[str]:
    """Start an empty dockerd under `root`; yields its DOCKER_HOST; stops it and removes its data."""
    _bridge()
    # Short paths: a unix socket path is limited to 107 bytes.
    sock = root / "d.sock"
    pidfile = root / "d.pid"
    log = root / "dockerd.log"
    argv = [
        "dockerd",
        "--host", f"unix://{sock}",
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(pidfile),
        "--bridge", BRIDGE,
        "--iptables=false",  # the world's engine owns the host's NAT rules; builds need no published ports
    ]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:

        def alive() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"fresh dockerd exited:\n{log.read_text()[-2000:]}")
            return bool(world.docker_alive(sock))

        wait_until(alive, interval=0.2, what="the fresh dockerd")
        yield f"unix://{sock}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(root / "data", ignore_errors=True)


def docker_on(host: str, *args: str, timeout: float = 600) -> str:
    """The docker CLI against engine `host`; its stdout."""
    env = {**os.environ, "DOCKER_HOST": host}
    proc = subprocess.run(
        [world.DOCKER_CLI, *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def push_base_image(registry: str, image: str = world.BUSYBOX_IMAGE) -> str:
    """`image` from the world's engine, pushed to `registry` (host:port): what a fresh engine can pull."""
    target = f"{registry}/{image}"
    docker_on(world.DOCKER_HOST, "tag", image, target)
    docker_on(world.DOCKER_HOST, "push", "-q", target)
    return target
