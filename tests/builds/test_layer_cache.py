"""The layer cache: a new commit built on an engine that never saw the repository reuses the layers
of the repository's previous image from the registry, and says so."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from binder_service.builds.executor import BuildJob
from binder_service.builds.r2d_args import r2d_args
from binder_service.events import Phase
from binder_service.images.layer_cache import CacheWatch
from binder_service.images.registry.client import MANIFEST_TYPES, split_image
from binder_service.providers import ResolvedRepo
from tests.support.gitserve import commit, make_repo
from tests.support.service import sse_messages


def _job(**kw: object) -> BuildJob:
    repo = ResolvedRepo("git", "git://127.0.0.1/r", "main", "c" * 40, "git-r")
    return BuildJob(build_id="b", image_name="127.0.0.1:5055/p/r-1:" + "c" * 40, repo=repo, push=True, **kw)  # type: ignore[arg-type]


def test_argv_exports_inline_cache_and_imports_the_previous_image() -> None:
    argv = r2d_args(_job(layer_cache=True, cache_from="127.0.0.1:5055/p/r-1:old"), [])
    assert argv[argv.index("--build-arg") + 1] == "BUILDKIT_INLINE_CACHE=1"
    assert argv[argv.index("--cache-from") + 1] == "127.0.0.1:5055/p/r-1:old"
    assert argv.index("--cache-from") < argv.index("--")  # options, never after the URL
    first_build = r2d_args(_job(layer_cache=True), [])
    assert "BUILDKIT_INLINE_CACHE=1" in first_build
    assert "--cache-from" not in first_build
    off = r2d_args(_job(), [])
    assert "--build-arg" not in off
    assert "--cache-from" not in off


def test_cache_watch_says_when_the_imported_layers_were_used() -> None:
    said: list[str] = []
    emit = lambda phase, msg: said.append(msg)  # noqa: E731
    watch = CacheWatch("reg/x:old")
    for line in ["#4 importing cache manifest from reg/x:old", "#4 DONE 0.0s", "#7 CACHED", "#8 CACHED"]:
        watch.feed(emit, Phase.BUILDING, line + "\n")
    assert watch.hit
    assert said == ["Reusing layers of reg/x:old\n"]

    said.clear()
    missing = CacheWatch("reg/x:gone")
    for line in [
        "#4 importing cache manifest from reg/x:gone",
        "#4 ERROR: reg/x:gone: not found",
        "#7 CACHED",
    ]:
        missing.feed(emit, Phase.BUILDING, line + "\n")
    # The import failed: a step the engine had cached itself is not a layer-cache hit (the metric's
    # hit ratio measures the cache imported from the registry, not what a node happened to keep).
    assert not missing.hit
    assert said == []

    local = CacheWatch(None)  # the layer cache off: the engine's own cache is no hit either
    local.feed(emit, Phase.BUILDING, "#7 CACHED\n")
    assert not local.hit

    cold = CacheWatch(None)
    cold.feed(emit, Phase.BUILDING, "#5 [2/3] RUN make\n#5 DONE 3.1s\n")
    assert not cold.hit


def _layers(registry: str, image: str) -> list[str]:
    _, repo, tag = split_image(image)
    r = httpx.get(f"{registry}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=10)
    assert r.status_code == 200, r.text
    return [layer["digest"] for layer in r.json()["layers"]]


def _build(service: str, repo: str) -> tuple[str, list[dict[str, object]]]:
    r = httpx.post(f"{service}api/v1/builds", json={"repo": repo, "ref": "main"}, timeout=30)
    assert r.status_code == 201, r.text
    build = r.json()
    events = sse_messages(str(httpx.URL(service).join(build["events_url"])), timeout=300)
    assert events[-1]["phase"] == "ready", events[-3:]
    return str(build["image_name"]), events


def _metric(service: str, line_start: str) -> float:
    for line in httpx.get(f"{service}metrics", timeout=10).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.docker
def test_fresh_engine_reuses_the_previous_commits_layers(
    start_service: Callable[..., AbstractContextManager[str]],
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    fresh_engine_host: str,
    world_registry: object,
) -> None:
    registry = "http://" + registry_base_image.split("/", 1)[0]
    name = f"cache-{uuid.uuid4().hex[:8]}"
    # The expensive step writes when it ran; a rebuild that re-ran it would make a different layer.
    dockerfile = (
        f"FROM {registry_base_image}\nARG NB_USER\nARG NB_UID\n"
        f"RUN sleep 2 && date +%s%N > /stamp && echo {name}\n"
        "COPY step.txt /step.txt\n"
    )
    make_repo(git_root, name, {"Dockerfile": dockerfile, "step.txt": "1"})
    prefix = f"test-cache-{uuid.uuid4().hex[:6]}/"
    with start_service(image_prefix=prefix) as service:  # the world's engine: "engine A"
        first, _ = _build(service, git_daemon_url + name)

    commit(git_root / name, {"step.txt": "2"})
    with start_service(image_prefix=prefix, docker_host=fresh_engine_host) as service:  # "engine B"
        started = time.monotonic()
        second, events = _build(service, git_daemon_url + name)
        elapsed = time.monotonic() - started
        messages = [str(e["message"]) for e in events]
        assert f"Reusing layers of {first}\n" in messages
        assert _metric(service, 'binder_layer_cache_builds_total{result="hit"}') == 1
    print(f"rebuild on a fresh engine: {elapsed:.1f}s")  # figures belong in bench/layer_cache.py

    a, b = _layers(registry, first), _layers(registry, second)
    assert a[:-1] == b[:-1]  # every layer up to the expensive step's is the very same blob
    assert a[-1] != b[-1]  # the per-commit step was rebuilt


@pytest.mark.docker
def test_layer_cache_off_rebuilds_everything(
    start_service: Callable[..., AbstractContextManager[str]],
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    fresh_engine_host: str,
) -> None:
    registry = "http://" + registry_base_image.split("/", 1)[0]
    name = f"nocache-{uuid.uuid4().hex[:8]}"
    dockerfile = (
        f"FROM {registry_base_image}\nARG NB_USER\nARG NB_UID\n"
        f"RUN date +%s%N > /stamp && echo {name}\nCOPY step.txt /step.txt\n"
    )
    make_repo(git_root, name, {"Dockerfile": dockerfile, "step.txt": "1"})
    prefix = f"test-nocache-{uuid.uuid4().hex[:6]}/"
    with start_service(image_prefix=prefix, layer_cache=False) as service:
        first, _ = _build(service, git_daemon_url + name)
    commit(git_root / name, {"step.txt": "2"})
    with start_service(image_prefix=prefix, layer_cache=False, docker_host=fresh_engine_host) as service:
        second, events = _build(service, git_daemon_url + name)
        assert not any("Reusing layers" in str(e["message"]) for e in events)
        assert _metric(service, 'binder_layer_cache_builds_total{result="miss"}') == 1
    a, b = _layers(registry, first), _layers(registry, second)
    assert a[-2] != b[-2]  # the timestamp step ran again
