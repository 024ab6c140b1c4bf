"""Users' own images: list what you built, delete your own (admins: any). Real registry, git, SQLite."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from binder_service.auth import Identity
from binder_service.errors import Forbidden, ImageNotFound, ImageShared, NoRegistry
from binder_service.images.admin import ImageAdmin
from binder_service.images.registry.client import split_image
from binder_service.store import BuildStore
from binder_service.store.records import ImageTouch
from tests.support.repos import buildable_repo
from tests.support.service import sse_messages

MANIFESTS = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
ALICE = Identity(name="alice", kind="user")
BOB = Identity(name="bob", kind="user")


def _manifest_status(registry: str, image: str) -> int:
    _, repo, tag = split_image(image)
    r = httpx.get(f"{registry}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFESTS}, timeout=10)
    return r.status_code


@pytest.mark.docker
def test_list_and_delete_a_built_image_through_the_api(
    start_service: Callable[..., AbstractContextManager[str]],
    world_env: dict[str, str],
    git_root: Path,
    git_daemon_url: str,
) -> None:
    registry = f"http://{world_env['BINDER_WORLD_REGISTRY']}"
    name, _ = buildable_repo(git_root, prefix="own-image")
    with start_service() as service:
        r = httpx.post(f"{service}api/v1/builds", json={"repo": git_daemon_url + name}, timeout=60)
        assert r.status_code == 201, r.text
        build = r.json()
        events = sse_messages(f"{service}api/v1/builds/{build['id']}/events", timeout=300)
        assert events[-1]["phase"] == "ready"
        image = build["image_name"]
        assert _manifest_status(registry, image) == 200

        listed = httpx.get(f"{service}api/v1/images", timeout=30).json()["images"]
        assert image in [i["image"] for i in listed]

        r = httpx.delete(f"{service}api/v1/images/{quote(image, safe='')}", timeout=60)
        assert r.status_code == 200, r.text
        assert r.json() == {"image": image, "outcome": "deleted"}
        assert _manifest_status(registry, image) == 404
        assert image not in [i["image"] for i in httpx.get(f"{service}api/v1/images").json()["images"]]

        again = httpx.delete(f"{service}api/v1/images/{quote(image, safe='')}", timeout=60)
        assert (again.status_code, again.json()["code"]) == (404, "image_not_found")
        # Asking for it again builds it again (the "this image exists" cache forgot it).
        r = httpx.post(f"{service}api/v1/builds", json={"repo": git_daemon_url + name}, timeout=60)
        assert r.status_code == 201, r.text
        assert r.json()["cached"] is False


async def test_users_see_and_delete_only_their_own_images(tmp_path: Path) -> None:
    store = await BuildStore.open(f"sqlite:///{tmp_path / 'store.sqlite'}", op_timeout=5.0)
    try:
        now = datetime.now(UTC)
        for image, who in (("r/p/a:1", "alice"), ("r/p/shared:1", "alice"), ("r/p/shared:1", "bob")):
            store.touch_image(ImageTouch(image, "git", "h/x", now, requester=who, built=True))
        store.touch_image(ImageTouch("r/p/answered:1", "git", "h/y", now, requester="alice", built=False))
        await store.flush()
        forgotten: list[str] = []
        admin = ImageAdmin(store.db, None, forget=forgotten.extend)
        assert sorted(i.image for i in await admin.list(ALICE)) == ["r/p/a:1", "r/p/shared:1"]
        assert [i.image for i in await admin.list(BOB)] == ["r/p/shared:1"]
        with pytest.raises(Forbidden):
            await admin.delete(BOB, "r/p/a:1")
        with pytest.raises(ImageShared):
            await admin.delete(ALICE, "r/p/shared:1")
        with pytest.raises(ImageNotFound):
            await admin.delete(ALICE, "r/p/answered:1")  # answered with, never built here
        with pytest.raises(NoRegistry):
            await admin.delete(ALICE, "r/p/a:1")  # allowed, but these images live in the local engine
        assert forgotten == []
    finally:
        await store.aclose()
