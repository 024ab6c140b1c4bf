"""Our repo2docker engine over buildah (engines/buildah.py): its command lines, registries and logs.

The real builds are in tests/builds/test_buildah.py; these look at what the engine asks buildah for.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import tarfile
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # repo2docker imports python-json-logger by its deprecated path (in its own process it only warns)
    warnings.simplefilter("ignore", DeprecationWarning)
    from repo2docker.app import Repo2Docker

from binder_service.builds.executor import BuildJob
from binder_service.builds.r2d_args import r2d_args
from binder_service.builds.r2d_logs import Progress
from binder_service.engines.buildah import BuildahEngine, from_images, registries_conf
from binder_service.events import Phase
from binder_service.images.layer_cache import CacheWatch
from binder_service.images.naming import cache_repository
from binder_service.providers import ResolvedRepo
from binder_service.units import is_loopback

IMAGE = "127.0.0.1:5055/p/r-1:" + "c" * 40


def engine(**config: Any) -> BuildahEngine:
    app = Repo2Docker()
    for key, value in config.items():
        setattr(app.config.BuildahEngine, key, value)
    return BuildahEngine(parent=app)


def test_the_entry_point_repo2docker_loads() -> None:
    app = Repo2Docker(engine="buildah")
    assert isinstance(app.get_engine(), BuildahEngine)


def test_bud_arguments() -> None:
    args = engine(isolation="chroot")._bud_args(
        {"NB_USER": "jovyan", "NB_UID": "1000"},
        [],
        {"memory": 2**30, "memswap": 2**30},
        IMAGE,
        {"repo2docker.ref": "abc"},
        "linux/amd64",
        True,
    )
    assert args[:2] == ["buildah", "bud"]
    pairs = list(itertools.pairwise(args))
    for pair in [
        ("--format", "docker"),
        ("--isolation", "chroot"),
        ("--network", "host"),
        ("--tag", IMAGE),
        ("--build-arg", "NB_USER=jovyan"),
        ("--build-arg", "NB_UID=1000"),
        ("--label", "repo2docker.ref=abc"),
        ("--platform", "linux/amd64"),
    ]:
        assert pair in pairs
    assert {"--layers", "--force-rm", "--memory=1073741824", "--memory-swap=1073741824"} <= set(args)
    assert "--cache-from" not in args  # the layer cache off: repo2docker passed no cache_from
    assert "--cache-to" not in args


def test_isolation_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDAH_ISOLATION", "oci")
    assert engine().isolation == "oci"
    monkeypatch.delenv("BUILDAH_ISOLATION")
    assert engine().isolation == "chroot"


def test_cache_from_maps_tagged_images_to_the_repositorys_cache() -> None:
    e = engine()
    old = "127.0.0.1:5055/p/r-1:old"
    args = e._bud_args(None, [old], None, IMAGE, None, None, True)
    assert args[args.index("--cache-from") + 1] == "127.0.0.1:5055/p/r-1-cache"  # a repository, no tag
    assert args[args.index("--cache-to") + 1] == "127.0.0.1:5055/p/r-1-cache"
    not_pushed = e._bud_args(None, [old], None, IMAGE, None, None, False)
    assert "--cache-to" not in not_pushed  # nowhere to push the cache to


@pytest.mark.parametrize(
    ("image", "cache"),
    [
        ("127.0.0.1:5055/p/r-1:abc", "127.0.0.1:5055/p/r-1-cache"),
        ("127.0.0.1:5055/p/r-1", "127.0.0.1:5055/p/r-1-cache"),
        ("reg.example/a/b:t", "reg.example/a/b-cache"),
        ("reg.example/a/b@sha256:" + "0" * 64, "reg.example/a/b-cache"),
        ("localhost:5000/x:1", "localhost:5000/x-cache"),
    ],
)
def test_cache_repository(image: str, cache: str) -> None:
    assert cache_repository(image) == cache


def test_registries_conf_marks_only_loopback_registries_insecure() -> None:
    hosts = ["127.0.0.1:5055", "docker.io", "quay.io", "localhost:5000", "[::1]:5000", "10.0.0.1:5000"]
    conf = registries_conf(hosts, 'unqualified-search-registries = ["docker.io"]\n')
    assert conf is not None
    assert conf.startswith('unqualified-search-registries = ["docker.io"]\n')  # the operator's stays
    for host in ("127.0.0.1:5055", "localhost:5000", "[::1]:5000"):
        assert f'[[registry]]\nlocation = "{host}"\ninsecure = true\n' in conf
    for host in ("docker.io", "quay.io", "10.0.0.1:5000"):
        assert f'location = "{host}"' not in conf
    assert registries_conf(["docker.io", "quay.io"], "") is None  # nothing to add: the file in force stays
    configured = '[[registry]]\nlocation = "127.0.0.1:5055"\ninsecure = false\n'
    assert registries_conf(["127.0.0.1:5055"], configured) is None  # the operator decided
    assert registries_conf(["127.0.0.1:5055"], '[registries.search]\nregistries = ["docker.io"]\n') is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5055", True), ("127.1.2.3", True), ("localhost", True), ("[::1]:5000", True),
     ("localhost.example.org:5000", False), ("10.0.0.1:5000", False), ("docker.io", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_from_images() -> None:
    text = "FROM --platform=linux/amd64 127.0.0.1:5055/base:1 AS b\nRUN x\nfrom docker.io/library/debian\n"
    assert from_images(text) == ["127.0.0.1:5055/base:1", "docker.io/library/debian"]


def _fake_buildah(tmp_path: Path) -> Path:
    """A `buildah` that records its arguments, environment and build context, and says one step."""
    script = tmp_path / "buildah"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/calls\n'
        f'cat "$CONTAINERS_REGISTRIES_CONF" > {tmp_path}/registries.conf 2>/dev/null\n'
        f"env > {tmp_path}/env\n"
        'for a in "$@"; do last="$a"; done\n'
        f'[ "$1" = bud ] && ls "$last" > {tmp_path}/context\n'
        'echo "STEP 1/1: FROM x"\n'
        '[ -n "$FAIL" ] && { echo \'Error: building at STEP "RUN exit 3": exit status 3\'; exit 1; }\n'
        "exit 0\n"
    )
    script.chmod(0o755)
    return script


def test_both_build_shapes_and_the_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINER_ENGINE_REGISTRY_CREDENTIALS", "")
    e = engine(command=str(_fake_buildah(tmp_path)))
    # the buildpacks' shape: a tar holding a generated Dockerfile
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        data = b"FROM 127.0.0.1:5055/base:1\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tar_bytes.seek(0)
    lines = list(e.build(fileobj=tar_bytes, custom_context=True, tag=IMAGE, push=True))
    assert lines == ["STEP 1/1: FROM x\n", f"pushing {IMAGE} with buildah\n", "STEP 1/1: FROM x\n"]
    bud, push = (tmp_path / "calls").read_text().splitlines()
    assert bud.startswith("bud ")
    assert push == f"push {IMAGE} docker://{IMAGE}"
    assert (tmp_path / "context").read_text().split() == ["Dockerfile"]
    assert 'location = "127.0.0.1:5055"\ninsecure = true' in (tmp_path / "registries.conf").read_text()

    # the Docker buildpack's shape: a directory and a Dockerfile relative to it
    repo = tmp_path / "repo"
    (repo / "binder").mkdir(parents=True)
    (repo / "binder" / "Dockerfile").write_text("FROM docker.io/library/debian\n")
    (tmp_path / "calls").unlink()
    list(e.build(path=str(repo), dockerfile="binder/Dockerfile", tag=IMAGE))
    (bud,) = (tmp_path / "calls").read_text().splitlines()
    assert f"--file {repo}/binder/Dockerfile {repo}" in bud


def test_a_failure_raises_buildahs_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from repo2docker.engine import BuildError

    monkeypatch.setenv("FAIL", "1")
    e = engine(command=str(_fake_buildah(tmp_path)))
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM x\n")
    with pytest.raises(BuildError, match=r'^Error: building at STEP "RUN exit 3": exit status 3$'):
        list(e.build(path=str(tmp_path / "ctx"), tag=IMAGE, push=True))
    assert len((tmp_path / "calls").read_text().splitlines()) == 1  # no push after a failed build


def test_repo2docker_credentials_go_to_a_private_auth_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CONTAINER_ENGINE_REGISTRY_CREDENTIALS",
        '{"registry": "127.0.0.1:5055", "username": "u", "password": "s3cret-pw"}',
    )
    e = engine(command=str(_fake_buildah(tmp_path)))
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM x\n")
    list(e.build(path=str(tmp_path / "ctx"), tag=IMAGE, push=True))
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    assert "s3cret-pw" not in (tmp_path / "env").read_text()  # buildah's environment: a path only
    assert "s3cret-pw" not in (tmp_path / "calls").read_text()  # nor its command line
    assert env["REGISTRY_AUTH_FILE"].endswith("auth.json")
    assert not os.path.exists(env["REGISTRY_AUTH_FILE"])  # gone with the build


def test_inspect_image_of_a_missing_image_is_none(tmp_path: Path) -> None:
    missing = tmp_path / "buildah"
    missing.write_text("#!/bin/sh\necho 'Error: image not known' >&2\nexit 125\n")
    missing.chmod(0o755)
    assert engine(command=str(missing)).inspect_image("nothing:1") is None


def _job(**kw: Any) -> BuildJob:
    repo = ResolvedRepo("git", "git://127.0.0.1/r", "main", "c" * 40, "git-r")
    return BuildJob(build_id="b", image_name=IMAGE, repo=repo, push=True, **kw)


def test_repo2docker_arguments_for_buildah() -> None:
    first = r2d_args(_job(layer_cache=True), [], engine="buildah")
    assert first[:2] == ["--engine", "buildah"]
    assert first[first.index("--cache-from") + 1] == IMAGE  # names the cache repository, to fill it
    assert "BUILDKIT_INLINE_CACHE=1" not in first  # buildx's, not buildah's
    later = r2d_args(_job(layer_cache=True, cache_from="127.0.0.1:5055/p/r-1:old"), [], engine="buildah")
    assert later[later.index("--cache-from") + 1] == "127.0.0.1:5055/p/r-1:old"
    assert "--cache-from" not in r2d_args(_job(), [], engine="buildah")  # the layer cache off
    assert "--engine" not in r2d_args(_job(), [])  # docker: repo2docker's default


def test_buildah_lines_map_onto_phases_and_the_error_is_said_once() -> None:
    said: list[tuple[Phase, str]] = []
    progress = Progress(lambda phase, message: said.append((phase, message)))
    for message, phase in [
        ("STEP 2/3: RUN exit 3", "building"),
        ("--> Pushing cache 127.0.0.1:5055/p/r-1-cache:abc", "building"),
        ('Error: building at STEP "RUN exit 3": exit status 3', "building"),
    ]:
        progress.feed(json.dumps({"message": message + "\n", "phase": phase}))
    assert [p for p, _ in said] == [Phase.BUILDING, Phase.BUILDING]  # a cache push is still building
    assert progress.failure("fallback") == 'Error: building at STEP "RUN exit 3": exit status 3'
    assert not any("Error:" in m for _, m in said)  # said once: in the failed event

    pushing = Progress(lambda phase, message: said.append((phase, message)))
    pushing.feed(
        json.dumps({"message": "pushing 127.0.0.1:5055/p/r-1:c with buildah\n", "phase": "building"})
    )
    assert pushing.phase is Phase.PUSHING


def test_cache_watch_counts_the_registry_cache_only() -> None:
    said: list[str] = []
    watch = CacheWatch("127.0.0.1:5055/p/r-1:old")
    watch.feed(lambda p, m: said.append(m), Phase.BUILDING, "--> Using cache 0e9caf8801d\n")
    assert not watch.hit  # buildah's own storage
    watch.feed(
        lambda p, m: said.append(m),
        Phase.BUILDING,
        "--> Cache pulled from remote 127.0.0.1:5055/p/r-1-cache:9478be4f74195c89\n",
    )
    assert watch.hit
    assert said == ["Reusing layers of 127.0.0.1:5055/p/r-1:old\n"]


def test_the_operators_limits_bind_each_run_step() -> None:
    args = engine(memory_limit=64 * 2**20, cpu_limit=1.5)._bud_args(None, [], {}, IMAGE, None, None, True)
    assert {"--memory=67108864", "--memory-swap=67108864"} <= set(args)  # no swap beyond the limit
    assert {"--cpu-period=100000", "--cpu-quota=150000"} <= set(args)


def test_a_step_killed_at_the_memory_limit_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repo2docker.engine import BuildError

    script = tmp_path / "buildah"
    script.write_text("#!/bin/sh\necho 'Error: building at STEP \"RUN make\": exit status 137'\nexit 1\n")
    script.chmod(0o755)
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM x\n")
    limited = engine(command=str(script), memory_limit=64 * 2**20)
    said: list[str] = []
    with pytest.raises(BuildError) as raised:
        said.extend(limited.build(path=str(tmp_path / "ctx"), tag=IMAGE))
    reason = str(raised.value)
    assert reason.startswith(
        "Error: out of memory: a RUN step was killed at the build's memory limit of 64 MiB"
    )
    assert 'STEP "RUN make"' in reason
    assert said[-1] == reason + "\n"  # the last error line: what the service reports
    # Without a limit, a killed step is an ordinary failure.
    with pytest.raises(BuildError, match=r"^Error: building at STEP"):
        list(engine(command=str(script)).build(path=str(tmp_path / "ctx"), tag=IMAGE))
