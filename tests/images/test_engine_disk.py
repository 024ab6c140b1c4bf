"""The engine disk budget: oldest use first, never pinned or in-use images, through the engine API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from binder_service.images.engine.disk import EngineDisk, _candidates
from binder_service.settings import Settings
from binder_service.units import parse_size
from tests.support.engines import docker_on
from tests.support.gitserve import make_repo
from tests.support.service import sse_messages


@pytest.mark.parametrize(
    ("text", "size"),
    [("400MB", 400_000_000), ("50GB", 50 * 10**9), ("2GiB", 2 * 2**30), ("1000", 1000), ("1.5 kB", 1500)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "lots", "-5MB", "5 XB", "MB"])
def test_bad_sizes_are_refused_at_startup(bad: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)
    if bad.strip():
        with pytest.raises(ValueError, match="size"):
            Settings(engine_disk_budget=bad)


def test_candidates_oldest_use_first_never_pinned_used_or_in_use() -> None:
    df = {
        "LayersSize": 10,
        "Images": [
            {"Id": "sha256:new", "RepoTags": ["reg/app-x:new"], "Created": 300, "Size": 5, "SharedSize": 0},
            {"Id": "sha256:old", "RepoTags": ["reg/app-x:old"], "Created": 100, "Size": 5, "SharedSize": 0},
            {"Id": "sha256:base", "RepoTags": ["reg/base:1"], "Created": 1, "Size": 5, "SharedSize": 0},
            {"Id": "sha256:pin", "RepoTags": ["reg/pinned:any"], "Created": 2, "Size": 5, "SharedSize": 0},
            {"Id": "sha256:run", "RepoTags": ["reg/busy:1"], "Created": 3, "Size": 5, "Containers": 1},
            {"Id": "sha256:build", "RepoTags": ["reg/app-y:c1"], "Created": 4, "Size": 5, "SharedSize": 0},
        ],
        "BuildCache": [
            {"ID": "busy", "InUse": True, "Size": 9, "LastUsedAt": "2020-01-01T00:00:00.123456789Z"},
            {"ID": "stale", "InUse": False, "Size": 9, "LastUsedAt": "1970-01-01T00:03:20.5Z"},
        ],
    }
    protected = {"reg/base:1", "reg/pinned", "reg/app-y:c1"}  # pinned tag, pinned name, a build's image
    order = [(c.kind, c.id) for c in _candidates(df, protected)]
    assert order == [("image", "sha256:old"), ("cache", "stale"), ("image", "sha256:new")]


def _blob_repo(git_root: Path, base: str, n: int) -> str:
    name = f"disk-{uuid.uuid4().hex[:8]}-{n}"
    # ~100 MB of its own per build: random bytes, so neither layers nor compression are shared.
    dockerfile = (
        f"FROM {base}\nARG NB_USER\nARG NB_UID\nRUN head -c 100000000 /dev/urandom > /blob && echo {name}\n"
    )
    make_repo(git_root, name, {"Dockerfile": dockerfile})
    return name


def _usage(host: str) -> int:
    async def measure() -> int:
        disk = EngineDisk(host, budget=0)
        try:
            return await disk.usage()
        finally:
            await disk.aclose()

    return asyncio.run(measure())


@pytest.mark.docker
def test_a_stream_of_builds_ends_under_budget_and_every_build_ready(
    start_service: Callable[..., AbstractContextManager[str]],
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    fresh_engine_host: str,
) -> None:
    budget = 300_000_000
    # The base image, tagged in the engine and pinned: it must survive every prune.
    docker_on(fresh_engine_host, "pull", "-q", registry_base_image)
    names = [_blob_repo(git_root, registry_base_image, n) for n in range(5)]
    # Images stay in the engine (no registry): the budget is all that bounds them.
    with start_service(
        registry_url="",
        image_prefix=f"test-disk-{uuid.uuid4().hex[:6]}/",
        docker_host=fresh_engine_host,
        engine_disk_budget="300MB",
        engine_pinned_images=[registry_base_image],
        max_concurrent_builds=1,
        build_timeout=300.0,
    ) as service:
        for name in names:
            r = httpx.post(
                f"{service}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30
            )
            assert r.status_code == 201, r.text
            events = sse_messages(str(httpx.URL(service).join(r.json()["events_url"])), timeout=300)
            assert events[-1]["phase"] == "ready", events[-3:]
        # The check after the last build runs in the background: wait for it to settle.
        deadline = time.monotonic() + 120
        while (usage := _usage(fresh_engine_host)) > budget and time.monotonic() < deadline:
            time.sleep(0.5)
        metrics = httpx.get(f"{service}metrics", timeout=10).text
        # The oldest build's image was pruned: asking for it again builds it, never answers a gone image.
        again = httpx.post(
            f"{service}api/v1/builds", json={"repo": git_daemon_url + names[0], "ref": "main"}, timeout=30
        )
        assert again.status_code == 201, again.text
        events = sse_messages(str(httpx.URL(service).join(again.json()["events_url"])), timeout=300)
        assert events[-1]["phase"] == "ready"
    assert usage <= budget, f"engine uses {usage} bytes, budget {budget}"
    pruned = [
        line for line in metrics.splitlines() if line.startswith('binder_engine_pruned_total{kind="image"}')
    ]
    assert float(pruned[0].rsplit(" ", 1)[1]) >= 2  # 5 x 100 MB in 300 MB: at least two images went
    tags = docker_on(fresh_engine_host, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert registry_base_image in tags  # pinned
    assert any(names[-1] in t for t in tags)  # the newest build's image is the last to go


def test_chart_runs_the_pruner_next_to_every_engine() -> None:
    from tests.support.chart import CHART, kube_validate, lint_problems, objects, one, render, secret_data

    assert not [d for d in objects(render()) if d["metadata"]["name"].endswith("-pruner")]  # off by default
    values = {
        "dockerApi": {"diskBudget": "200GB", "pinnedImages": ["reg/base:1"]},
        "build": {"nodeSelector": {"x": "y"}},
    }
    assert lint_problems(CHART, values) == []
    docs = objects(render(values))
    kube_validate(docs)
    engine = next(
        d for d in docs if d["kind"] == "DaemonSet" and not d["metadata"]["name"].endswith("-pruner")
    )
    pruner = one(docs, "DaemonSet", engine["metadata"]["name"] + "-pruner")
    pod = pruner["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["binder-service", "prune-engine"]
    env = {e["name"]: e["value"] for e in c["env"]}
    socket = secret_data(one(docs, "Secret", "demo-binder-service-config"))[
        "BINDER_SERVICE_K8S_DOCKER_SOCKET"
    ]
    assert env["DOCKER_HOST"] == f"unix://{socket}"  # the very engine build pods use
    assert env["BINDER_SERVICE_ENGINE_DISK_BUDGET"] == "200GB"
    assert Settings(engine_pinned_images=env["BINDER_SERVICE_ENGINE_PINNED_IMAGES"]).engine_pinned_images == [
        "reg/base:1"
    ]
    assert pod["nodeSelector"] == engine["spec"]["template"]["spec"]["nodeSelector"] == {"x": "y"}
    engine_run = {v["name"]: v for v in engine["spec"]["template"]["spec"]["volumes"]}["run"]["hostPath"][
        "path"
    ]
    assert pod["volumes"][0]["hostPath"]["path"] == engine_run
    with pytest.raises(Exception, match="diskBudget"):
        render({"dockerApi": {"diskBudget": "lots"}})


@pytest.mark.docker
def test_prune_engine_command_once(
    fresh_engine_host: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from binder_service.cli import main

    monkeypatch.setenv("DOCKER_HOST", fresh_engine_host)
    monkeypatch.setenv("BINDER_SERVICE_ENGINE_DISK_BUDGET", "100TB")
    assert main(["prune-engine", "--once"]) == 0
    assert "0 removed" in capsys.readouterr().out
    monkeypatch.delenv("BINDER_SERVICE_ENGINE_DISK_BUDGET")
    assert main(["prune-engine", "--once"]) == 2  # no budget: nothing to keep to
    monkeypatch.setenv("BINDER_SERVICE_ENGINE_DISK_BUDGET", "lots")
    assert main(["prune-engine", "--once"]) == 2
    assert "invalid configuration" in capsys.readouterr().err
