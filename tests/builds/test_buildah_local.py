"""The local executor with engine buildah, without running a build: its command line, environment,
storage, credentials and checks. Real builds: tests/builds/test_buildah.py."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from binder_service.builds.buildah_local import BuildahStorage, storage_key
from binder_service.builds.executor import BuildJob
from binder_service.builds.local import LocalExecutor
from binder_service.errors import BuilderUnavailable
from binder_service.providers import ResolvedRepo
from binder_service.settings import Settings

REGISTRY = "http://127.0.0.1:5055"
IMAGE = "127.0.0.1:5055/p/r-1:" + "c" * 40
SECRET = "pw-" + "z" * 20


def _job(image: str = IMAGE, build_id: str = "b1") -> BuildJob:
    repo = ResolvedRepo("git", "git://127.0.0.1/r", "main", "c" * 40, "git-r")
    return BuildJob(build_id=build_id, image_name=image, repo=repo, push=True, layer_cache=True)


def _executor(
    tmp_path: Path, path: str = "/usr/bin:/bin", docker_config: Path | None = None
) -> LocalExecutor:
    environ = {"PATH": path, "DOCKER_HOST": "unix:///elsewhere.sock"}
    storage = BuildahStorage(
        tmp_path / "state" / "buildah", environ=environ, registry_url=REGISTRY, docker_config=docker_config
    )
    return LocalExecutor(
        docker_host="unix:///tmp/x.sock",
        docker_config=docker_config,
        command=[str(Path(sys.executable).parent / "repo2docker")],
        extra_args=[],
        allowed_git_protocols=["git"],
        allow_local=False,
        environ=environ,
        docker_timeout=1,
        buildah=storage,
    )


def test_buildah_needs_a_registry() -> None:
    with pytest.raises(ValidationError, match="engine 'buildah' needs registry_url"):
        Settings(engine="buildah")
    assert Settings(engine="buildah", registry_url=REGISTRY).engine == "buildah"
    with pytest.raises(ValidationError):
        Settings(engine="podman")


async def test_a_build_runs_our_engine_with_its_storage_and_a_private_auth_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"127.0.0.1:5055": {"auth": _b64(f"u:{SECRET}")}}}))
    ex = _executor(tmp_path, docker_config=config)
    try:
        argv = ex.argv(_job())
        assert argv[argv.index("--engine") + 1] == "buildah"
        assert "DOCKER_HOST" not in ex._env  # no Docker engine: nothing points a build at one
        assert "DOCKER_CONFIG" not in ex._env  # the operator's whole config.json is not handed on
        async with ex._build_dir(_job()) as (env, fds):
            storage = tmp_path / "state" / "buildah" / storage_key(IMAGE)
            assert env["CONTAINERS_STORAGE_CONF"] == str(storage / "storage.conf")
            assert f'graphroot = "{storage / "root"}"' in (storage / "storage.conf").read_text()
            assert env["BUILDAH_ISOLATION"] == "oci"  # as root: RUN steps under runc, never a bare chroot
            auth = Path(env["REGISTRY_AUTH_FILE"])
            assert stat.S_IMODE(auth.stat().st_mode) == 0o600
            assert json.loads(auth.read_text())["auths"]["127.0.0.1:5055"]["auth"] == _b64(f"u:{SECRET}")
            assert auth.parent == Path(env["TMPDIR"]).parent  # the build's own directory
            assert not any(SECRET in value for value in env.values())
            assert len(fds) == 2  # the workdir's lock and the storage's, kept by the build's process
        assert not auth.exists()  # gone with the build
    finally:
        await ex.aclose()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_one_storage_per_repository_and_one_of_its_own_for_a_concurrent_build(tmp_path: Path) -> None:
    ex = _executor(tmp_path)
    other_commit = IMAGE.rsplit(":", 1)[0] + ":" + "d" * 40
    assert storage_key(IMAGE) == storage_key(other_commit)
    assert storage_key(IMAGE) != storage_key("127.0.0.1:5055/p/r-2:" + "c" * 40)
    try:
        async with ex._build_dir(_job()) as (first, _):
            async with ex._build_dir(_job(other_commit, "b2")) as (second, _):
                assert first["CONTAINERS_STORAGE_CONF"] != second["CONTAINERS_STORAGE_CONF"]
                own = Path(second["CONTAINERS_STORAGE_CONF"]).parent
                assert own.name == "tmp-b2"
            assert not own.exists()  # a build's own storage goes with it
        assert (tmp_path / "state" / "buildah" / storage_key(IMAGE)).is_dir()  # the repository's stays
    finally:
        await ex.aclose()


async def test_missing_buildah_is_a_clear_error_for_builds_and_health(tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    ex = _executor(tmp_path, path=str(empty))
    try:
        with pytest.raises(BuilderUnavailable, match="apt-get install buildah") as raised:
            await ex.run(_job(), lambda phase, message: None)
        assert raised.value.code == "builder_unavailable"
        with pytest.raises(
            BuilderUnavailable, match=r"buildah is not installed here .*apt-get install buildah"
        ):
            await ex.check()  # what /health reports
    finally:
        await ex.aclose()


def test_the_disk_budget_removes_the_least_recently_used_storage_nobody_holds(tmp_path: Path) -> None:
    root = tmp_path / "buildah"
    root.mkdir()
    storage = BuildahStorage(
        root, environ={"PATH": "/usr/bin:/bin"}, registry_url=REGISTRY, docker_config=None
    )
    paths = []
    for age, name in enumerate(["r-oldest", "r-held", "r-newer", "r-newest"]):
        path = storage._prepare(root / name)
        (path / "root").mkdir()
        (path / "root" / "layer").write_bytes(b"x" * 1_000_000)
        os.utime(path / ".lock", (1000 + age, 1000 + age))  # last use
        paths.append(path)
    held = os.open(root / "r-held" / ".lock", os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # a running build's
    try:
        removed = storage.prune(2_500_000)  # room for two of the four
    finally:
        os.close(held)
    assert [p.name for p in removed] == ["r-oldest", "r-newer"]  # never the held one, oldest use first
    assert sorted(p.name for p in root.iterdir()) == ["r-held", "r-newest"]


def test_limits_need_root_with_buildah_and_warn_with_docker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from binder_service.builds.executors import _engine_config

    limited = Settings(engine="buildah", registry_url=REGISTRY, build_memory_limit="1GiB", build_cpu_limit=2)
    assert (
        _engine_config(limited)
        == "c.BuildahEngine.memory_limit = 1073741824\nc.BuildahEngine.cpu_limit = 2.0\n"
    )
    with pytest.raises(ValidationError, match="at least 6MiB"):
        Settings(engine="buildah", registry_url=REGISTRY, build_memory_limit="1MB")
    docker = Settings(build_memory_limit="1GiB")
    with caplog.at_level("WARNING"):
        assert _engine_config(docker) == ""
    assert "do not bind builds with engine 'docker'" in caplog.text
    # Not root on cgroup v1 (this machine): no cgroup can be made for a build, so the limits are refused.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(
        ValidationError, match=r"none can be made here: .* cgroup v1 .* run the service as root"
    ):
        Settings(engine="buildah", registry_url=REGISTRY, build_memory_limit="1GiB")


async def test_a_build_user_must_exist_and_have_subordinate_ids(tmp_path: Path) -> None:
    def storage(user: str) -> BuildahStorage:
        return BuildahStorage(
            tmp_path / "b",
            environ={"PATH": "/usr/bin:/bin"},
            registry_url=REGISTRY,
            docker_config=None,
            build_user=user,
        )

    with pytest.raises(BuilderUnavailable, match=r"build user no-such-user-x does not exist: create it"):
        await storage("no-such-user-x").check()
    with pytest.raises(
        BuilderUnavailable, match=r"user nobody has no range in /etc/subuid.*usermod --add-subuids"
    ):
        await storage("nobody").check()
    assert storage("nobody").isolation == "chroot"  # rootless: buildah's user namespace, never runc as root


def test_build_user_settings() -> None:
    from binder_service.builds.executors import _engine_config

    rootless = Settings(engine="buildah", registry_url=REGISTRY, build_user="bsbuild")
    assert _engine_config(rootless) == "c.BuildahEngine.run_as = 'bsbuild'\n"
    with pytest.raises(ValidationError, match="build_user is for engine 'buildah'"):
        Settings(build_user="bsbuild")
    # As root, a build user's build is limited by its cgroup alone (its RUN steps run in a chroot).
    limited = Settings(
        engine="buildah", registry_url=REGISTRY, build_user="bsbuild", build_memory_limit="1GiB"
    )
    assert _engine_config(limited) == "c.BuildahEngine.run_as = 'bsbuild'\n"
