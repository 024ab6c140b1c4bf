"""Registry garbage collection of buildah's layer cache (`<repository>-cache`), against the real registry
(deletes enabled) and the real build store: a repository's cache goes with its last image; otherwise only
the cached steps made before the retention window go."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import world
from binder_service.images.registry.catalogue import RegistryImages
from binder_service.images.registry.client import MANIFEST_TYPES, RegistryClient, split_image
from binder_service.images.registry.gc import RegistryGC, SqlImageRecords
from binder_service.store import BuildStore, ImageTouch
from tests.support.registry_servers import RegistryServer

pytestmark = pytest.mark.docker
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=2)


def _push(image: str, label: str) -> str:
    """A tiny image of its own (a distinct manifest: its label), made now, pushed as `image`."""
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(f"FROM {world.BUSYBOX_IMAGE}\nLABEL gc-test={label}\n")
        env = {**os.environ, "DOCKER_HOST": world.DOCKER_HOST, "DOCKER_BUILDKIT": "0"}
        for argv in (["build", "-q", "-t", image, ctx], ["push", "-q", image]):
            subprocess.run([world.DOCKER_CLI, *argv], env=env, check=True, capture_output=True, timeout=120)
    return image


def _push_made_long_ago(image: str, base: str, tmp_path: Path) -> str:
    """An image whose configuration says it was made in 1970 (buildah --timestamp 0), pushed as `image`."""
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {base}\nLABEL gc-test=long-ago\n")
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/g"\nrunroot = "{tmp_path}/r"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    for argv in (
        [
            "bud",
            "--timestamp",
            "0",
            "--isolation",
            "chroot",
            "--tls-verify=false",
            "-t",
            image,
            str(tmp_path / "ctx"),
        ],
        ["push", "--tls-verify=false", image, f"docker://{image}"],
    ):
        subprocess.run(["buildah", *argv], env=env, check=True, capture_output=True, timeout=120)
    return image


def _status(registry_url: str, image: str) -> int:
    _, repo, tag = split_image(image)
    r = httpx.head(
        f"{registry_url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=10
    )
    return r.status_code


def test_gc_deletes_the_cache_of_gone_repositories_and_old_cached_steps(
    world_registry: RegistryServer, registry_base_image: str, tmp_path: Path
) -> None:
    host, url = world_registry.host, world_registry.url
    prefix = f"{host}/test-gccache-{uuid.uuid4().hex[:6]}/"
    gone, kept = f"{prefix}gone-1234567890", f"{prefix}kept-1234567890"
    gone_image = _push(f"{gone}:old", "gone")  # expired: the repository's last image
    gone_cache = _push(f"{gone}-cache:step1", "gone-step")  # a fresh step, but nothing of gone is left
    kept_image = _push(f"{kept}:recent", "kept")  # requested recently
    kept_old_step = _push_made_long_ago(f"{kept}-cache:step0", registry_base_image, tmp_path)
    kept_new_step = _push(f"{kept}-cache:step1", "kept-step")

    async def scenario() -> None:
        store = await BuildStore.open(f"sqlite:///{tmp_path / 'gc.sqlite'}", op_timeout=5.0)
        for image, at, built in [(gone_image, OLD, True), (kept_image, OLD, True), (kept_image, NOW, False)]:
            store.touch_image(ImageTouch(image, "git", "slug", at, requester="alice", built=built))
        await store.flush()
        try:
            async with httpx.AsyncClient() as http:
                registry = RegistryImages(RegistryClient(url, http, credentials=None, timeout=10))
                gc = RegistryGC(SqlImageRecords(store.db), registry, prefix=prefix, retention=86400)
                dry = await gc.collect(dry_run=True)
                cache_tags = [
                    split_image(t)[1] + ":" + split_image(t)[2] for t in (gone_cache, kept_old_step)
                ]
                assert dry.cache_deleted == cache_tags
                assert _status(url, gone_cache) == 200  # a dry run deletes nothing
                report = await gc.collect()
                assert report.deleted == [gone_image]
                assert report.cache_deleted == cache_tags
        finally:
            await store.aclose()

    asyncio.run(scenario())
    for deleted in (gone_image, gone_cache, kept_old_step):
        assert _status(url, deleted) == 404, deleted
    for still in (kept_image, kept_new_step):
        assert _status(url, still) == 200, still
