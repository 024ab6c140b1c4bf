"""Registry garbage collection against the real registry (deletes enabled) and the real build store:
past retention gone, inside it kept, nothing the service did not build touched."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import world
from binder_service.cli import main
from binder_service.images.registry.catalogue import DeleteDisabled, RegistryImages
from binder_service.images.registry.client import MANIFEST_TYPES, RegistryClient, split_image
from binder_service.images.registry.gc import RegistryGC, SqlImageRecords
from binder_service.store import BuildStore, ImageTouch
from tests.support.registry_servers import RegistryServer, start_registry

pytestmark = pytest.mark.docker
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=2)


def _push(registry: str, name: str, label: str) -> str:
    """A tiny image of its own (a distinct manifest: its label) pushed as `registry/name`."""
    image = f"{registry}/{name}"
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(f"FROM {world.BUSYBOX_IMAGE}\nLABEL gc-test={label}\n")
        env = {**os.environ, "DOCKER_HOST": world.DOCKER_HOST, "DOCKER_BUILDKIT": "0"}
        for argv in (["build", "-q", "-t", image, ctx], ["push", "-q", image]):
            subprocess.run([world.DOCKER_CLI, *argv], env=env, check=True, capture_output=True, timeout=120)
    return image


def _tag(src: str, dst: str) -> None:
    env = {**os.environ, "DOCKER_HOST": world.DOCKER_HOST}
    for argv in (["tag", src, dst], ["push", "-q", dst]):
        subprocess.run([world.DOCKER_CLI, *argv], env=env, check=True, capture_output=True, timeout=120)


def _status(registry_url: str, image: str) -> int:
    _, repo, tag = split_image(image)
    r = httpx.head(
        f"{registry_url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=10
    )
    return r.status_code


async def _store(tmp_path: Path, touches: list[ImageTouch]) -> BuildStore:
    store = await BuildStore.open(f"sqlite:///{tmp_path / 'gc.sqlite'}", op_timeout=5.0)
    for touch in touches:
        store.touch_image(touch)
    await store.flush()
    return store


def _touch(image: str, at: datetime, *, built: bool = True) -> ImageTouch:
    return ImageTouch(image, "git", "slug", at, requester="alice", built=built)


def test_gc_deletes_only_expired_images_it_built(world_registry: RegistryServer, tmp_path: Path) -> None:
    host, url = world_registry.host, world_registry.url
    prefix = f"{host}/test-gc-{uuid.uuid4().hex[:6]}/"
    repo = f"{prefix.split('/', 1)[1]}app-1234567890"
    expired = _push(host, f"{repo}:old", "old")
    recent = _push(host, f"{repo}:recent", "recent")
    foreign = _push(host, f"{repo}:foreign", "foreign")  # pushed by someone else: not in the store
    shared = _push(host, f"{repo}:shared", "shared")
    _tag(shared, f"{host}/{repo}:mirror")  # someone else's tag on the very same manifest
    answered = _push(host, f"{repo}:answered", "answered")  # asked for, never built by the service
    outside = _push(host, f"test-other-{uuid.uuid4().hex[:6]}/app:old", "outside")  # another prefix

    async def scenario() -> None:
        store = await _store(
            tmp_path,
            [
                _touch(expired, OLD),
                _touch(recent, OLD),
                _touch(recent, NOW, built=False),  # requested again (the cached path counts)
                _touch(shared, OLD),
                _touch(answered, OLD, built=False),
                _touch(outside, OLD),
            ],
        )
        try:
            async with httpx.AsyncClient() as http:
                registry = RegistryImages(RegistryClient(url, http, credentials=None, timeout=10))
                gc = RegistryGC(SqlImageRecords(store.db), registry, prefix=prefix, retention=86400)
                dry = await gc.collect(dry_run=True)
                assert dry.deleted == [expired]
                assert _status(url, expired) == 200  # a dry run deletes nothing
                report = await gc.collect()
                assert report.deleted == [expired]
                assert report.kept_shared == [shared]
                assert await gc.expired() == [shared]  # forgotten once deleted; kept ones stay known
        finally:
            await store.aclose()

    asyncio.run(scenario())
    assert _status(url, expired) == 404
    for kept in (recent, foreign, shared, f"{host}/{repo}:mirror", answered, outside):
        assert _status(url, kept) == 200, kept


def test_cli_dry_run_lists_what_would_go(
    world_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = world_registry.host
    prefix = f"test-gccli-{uuid.uuid4().hex[:6]}/"
    expired = _push(host, f"{prefix}app-1:old", "cli-old")
    db = f"sqlite:///{tmp_path / 'gc.sqlite'}"

    async def seed() -> None:
        store = await _store(tmp_path, [_touch(expired, OLD)])
        await store.aclose()

    asyncio.run(seed())
    monkeypatch.setenv("BINDER_SERVICE_DB_URL", db)
    monkeypatch.setenv("BINDER_SERVICE_REGISTRY_URL", world_registry.url)
    monkeypatch.setenv("BINDER_SERVICE_IMAGE_PREFIX", prefix)
    monkeypatch.setenv("BINDER_SERVICE_REGISTRY_RETENTION", "12h")
    assert main(["gc", "--dry-run"]) == 0
    assert f"would delete {expired}" in capsys.readouterr().out
    assert _status(world_registry.url, expired) == 200
    assert main(["gc"]) == 0
    assert f"deleted {expired}" in capsys.readouterr().out
    assert _status(world_registry.url, expired) == 404

    monkeypatch.delenv("BINDER_SERVICE_REGISTRY_RETENTION")
    assert main(["gc"]) == 2  # nothing to go by: refused, not "delete everything"
    assert "REGISTRY_RETENTION" in capsys.readouterr().err


def test_a_registry_without_deletes_is_named_clearly(world_env: dict[str, str], tmp_path: Path) -> None:
    server = start_registry(tmp_path / "reg")  # distribution's default: deletes disabled
    try:
        image = server.push("nodelete/app", "old")

        async def scenario() -> None:
            async with httpx.AsyncClient() as http:
                registry = RegistryImages(RegistryClient(server.url, http, credentials=None, timeout=10))
                _, repo, tag = split_image(image)
                digest = await registry.digest(repo, tag)
                assert digest is not None
                with pytest.raises(DeleteDisabled, match="405 UNSUPPORTED"):
                    await registry.delete(repo, digest)

        asyncio.run(scenario())
    finally:
        server.stop()


def test_the_service_collects_periodically(
    world_registry: RegistryServer,
    tmp_path: Path,
    start_service: Callable[..., AbstractContextManager[str]],
) -> None:
    host = world_registry.host
    prefix = f"test-gcsvc-{uuid.uuid4().hex[:6]}/"
    expired = _push(host, f"{prefix}app-1:old", "svc-old")
    kept = _push(host, f"{prefix}app-1:new", "svc-new")
    db = f"sqlite:///{tmp_path / 'gc.sqlite'}"

    async def seed() -> None:
        store = await _store(tmp_path, [_touch(expired, OLD), _touch(kept, NOW)])
        await store.aclose()

    asyncio.run(seed())
    with start_service(image_prefix=prefix, db_url=db, registry_retention="1d", registry_gc_interval=0.2):
        deadline = time.monotonic() + 60
        while _status(world_registry.url, expired) != 404:
            assert time.monotonic() < deadline, "the service never collected"
            time.sleep(0.2)
    assert _status(world_registry.url, kept) == 200


def test_a_token_registry_grants_the_delete(token_auth_registry: RegistryServer) -> None:
    # The token asked for must carry `delete`: a pull-only one is refused before the registry's 405.
    from binder_service.images.docker_config import RegistryCredentials

    image = token_auth_registry.push("gc-token/app", "old")
    creds = RegistryCredentials(token_auth_registry.username or "", token_auth_registry.password or "")

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            client = RegistryClient(token_auth_registry.url, http, credentials=creds, timeout=10)
            registry = RegistryImages(client)
            _, repo, tag = split_image(image)
            digest = await registry.digest(repo, tag)
            assert digest is not None
            with pytest.raises(DeleteDisabled):  # authorised; this registry keeps deletes off
                await registry.delete(repo, digest)

    asyncio.run(scenario())


def test_the_periodic_collection_says_what_went(world_registry: RegistryServer, tmp_path: Path) -> None:
    # The service's cache of existing images forgets what its collection deleted (app.py wires it).
    from binder_service.housekeeping import collect_registry_forever
    from binder_service.metrics import Metrics
    from binder_service.settings import Settings

    prefix = f"test-gcsay-{uuid.uuid4().hex[:6]}/"
    expired = _push(world_registry.host, f"{prefix}app-1:old", "say-old")
    db = f"sqlite:///{tmp_path / 'gc.sqlite'}"
    settings = Settings(
        registry_url=world_registry.url,
        image_prefix=prefix,
        db_url=db,
        registry_retention="1d",
        registry_gc_interval=0.1,
    )

    async def scenario() -> list[str]:
        store = await _store(tmp_path, [_touch(expired, OLD)])
        await store.aclose()
        heard: list[str] = []
        task = asyncio.create_task(collect_registry_forever(settings, Metrics(), heard.extend))
        try:
            async with asyncio.timeout(60):
                while not heard:
                    await asyncio.sleep(0.1)
        finally:
            task.cancel()
        return heard

    assert asyncio.run(scenario()) == [expired]
