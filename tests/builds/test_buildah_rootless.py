"""A service that is not root builds rootless as itself (engine buildah), end to end: `binder-service serve`
runs as an unprivileged user (the build user the test set-up makes, with subordinate id ranges), from a
virtualenv of Debian's Python that user can read, with its state directory its own; a build asked for
through the API ends `ready` with the image in the registry."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from binder_service.images.registry.client import MANIFEST_TYPES, split_image
from tests.support.buildah import native_build
from tests.support.gitserve import make_repo
from tests.support.serve_process import serve_process
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="the test switches to the build user (setpriv), as root"),
]


@pytest.fixture
def home(build_user: str) -> Iterator[Path]:
    """A directory of the build user's own for one test (the state directory, temporary files)."""
    user = pwd.getpwnam(build_user)
    path = Path(user.pw_dir) / f"test-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o700)
    os.chown(path, user.pw_uid, user.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)  # root removes what the user's namespace made too


def _as(user: pwd.struct_passwd, venv: Path) -> list[str]:
    """`binder-service serve` from `venv`, as `user` (no capability, no other group)."""
    setpriv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    return [*setpriv, str(venv / "bin" / "python"), "-m", "binder_service.cli", "serve"]


def _env(user: pwd.struct_passwd, venv: Path, state: Path, registry: str) -> dict[str, str]:
    """What an operator's unit would give it: its own HOME and PATH, the settings; nothing of root's."""
    return {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LANG": "C.UTF-8",
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "BINDER_SERVICE_ENGINE": "buildah",
        "BINDER_SERVICE_REGISTRY_URL": f"http://{registry}",
        "BINDER_SERVICE_IMAGE_PREFIX": f"test-rootless-{uuid.uuid4().hex[:6]}/",
        "BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS": "true",
        "BINDER_SERVICE_STATE_DIR": str(state),
        "BINDER_SERVICE_KEEPALIVE_INTERVAL": "0.5",
    }


def test_a_service_that_is_not_root_builds_rootless_as_itself(
    unprivileged_python: Path,
    build_user: str,
    world_env: dict[str, str],
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    home: Path,
    tmp_path: Path,
) -> None:
    user = pwd.getpwnam(build_user)
    name = f"bah-self-{uuid.uuid4().hex[:8]}"
    # uid_map inside the build: "0 <the service's uid> 1": RUN's root is the service's user outside
    dockerfile = f"FROM {registry_base_image}\nRUN head -1 /proc/self/uid_map && echo {name} > /id\n"
    make_repo(git_root, name, {"Dockerfile": dockerfile})
    state = home / "state"
    env = _env(user, unprivileged_python, state, world_env["BINDER_WORLD_REGISTRY"])
    with serve_process(
        env, tmp_path / "serve.log", graceful=True, command=_as(user, unprivileged_python)
    ) as (
        proc,
        url,
    ):
        assert Path(f"/proc/{proc.pid}").stat().st_uid == user.pw_uid  # the service is the user
        health = httpx.get(f"{url}health", timeout=60).json()
        assert {"service": "buildah", "ok": True} in health["checks"], health
        build, events = native_build(url, git_daemon_url + name)
        assert events[-1]["phase"] == "ready", events[-5:]
        maps = [e["message"].split() for e in events if e["message"].split()[:1] == ["0"]]
        assert maps, [e["message"] for e in events]
        assert maps[0][:2] == ["0", str(user.pw_uid)], maps
    _, repository, tag = split_image(build["image_name"])
    got = httpx.get(
        f"http://{world_env['BINDER_WORLD_REGISTRY']}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES},
        timeout=10,
    )
    assert got.status_code == 200, got.text
    storages = [p for p in (state / "buildah").iterdir() if p.is_dir()]
    assert storages
    assert {p.stat().st_uid for p in storages} == {user.pw_uid}  # buildah's storage is the user's
    wait_until(lambda: not _processes_of(user.pw_uid), what="the user's processes to end")


def _memory_on_cgroup_v1() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(" - cgroup " in line and "memory" in line.split()[-1].split(",") for line in f)


@pytest.mark.skipif(not _memory_on_cgroup_v1(), reason="the memory controller is not on cgroup v1 here")
def test_not_root_on_cgroup_v1_the_limits_are_refused_at_start(
    unprivileged_python: Path, build_user: str, world_env: dict[str, str], home: Path
) -> None:
    user = pwd.getpwnam(build_user)
    env = _env(user, unprivileged_python, home / "state", world_env["BINDER_WORLD_REGISTRY"])
    env["BINDER_SERVICE_BUILD_MEMORY_LIMIT"] = "1GiB"
    done = subprocess.run(
        _as(user, unprivileged_python), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "none can be made here" in done.stderr, done.stderr
    assert "cgroup v1 here, which delegates nothing to an unprivileged user" in done.stderr
    assert "run the service as root" in done.stderr


def _processes_of(uid: int) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                found.append(proc.name)
        except OSError:
            pass
    return found
