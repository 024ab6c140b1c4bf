"""The API's resources as JSON, pinned: a build (`BuildPublic`, also after its round trip through the
build store's record) and an image (`ImagePublic`). The conversions may change shape; the bytes may not."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import get_type_hints

from binder_service.api.images import ImagePublic, list_images
from binder_service.api.models import BuildPublic
from binder_service.auth import Identity
from binder_service.builds import Build, BuildStatus
from binder_service.builds.recording import restore, snapshot
from binder_service.events import Phase
from binder_service.images.admin import ImageAdmin, ImageInfo
from binder_service.providers import ResolvedRepo
from binder_service.store import BuildStore
from binder_service.store.records import ImageTouch

AT = datetime(2026, 12, 7, 5, 0, 0, tzinfo=UTC)
REPO = ResolvedRepo(
    provider="gh",
    repo_url="https://github.com/org/repo",
    ref="main",
    commit="1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
    build_slug="github.com/org/repo",
    content_provider="Git",
)
URL = "/api/v1/builds/b1/events"
IMAGE = "r/binder/gh-org-repo:1a2b"


def _failed() -> Build:
    build = Build(id="b1", image_name=IMAGE, repo=REPO, requester="alice", created_at=AT)
    build.requesters |= {"alice", "bob"}
    build.spec_key = "gh:github.com/org/repo"
    build.status, build.started_at = BuildStatus.RUNNING, AT.replace(second=5)
    build.pid, build.log_path, build.log_event_base, build.deadline = 42, "/logs/b1", 2, AT.replace(hour=6)
    build.phase_times.update(waiting=AT.isoformat(), building=AT.replace(second=5).isoformat())
    build.emit(Phase.WAITING, "Queued.\n", queue_position=1)
    build.emit(Phase.BUILDING, "Step 1/3\n")
    build.emit(Phase.FAILED, "repo2docker exited with 1\n", code="build_failed")
    build.finish(BuildStatus.FAILED, build.events()[-1])
    build.finished_at = AT.replace(second=59)
    return build


def _queued() -> Build:
    build = Build(id="b2", image_name=IMAGE, repo=REPO, created_at=AT)
    build.emit_queue_position(3)
    return build


FAILED_JSON = (
    '{"id":"b1","status":"failed","phase":"failed","image_name":"r/binder/gh-org-repo:1a2b","provider":"gh",'
    '"repo":"github.com/org/repo","ref":"main","commit":"1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",'
    '"cached":false,"queue_position":null,"created_at":"2026-12-07T05:00:00Z",'
    '"started_at":"2026-12-07T05:00:05Z","finished_at":"2026-12-07T05:00:59Z",'
    '"error":{"code":"build_failed","message":"repo2docker exited with 1"},"last_event_id":3,'
    '"events_url":"/api/v1/builds/b1/events"}'
)
QUEUED_JSON = (
    '{"id":"b2","status":"queued","phase":"waiting","image_name":"r/binder/gh-org-repo:1a2b","provider":"gh",'
    '"repo":"github.com/org/repo","ref":"main","commit":"1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",'
    '"cached":false,"queue_position":3,"created_at":"2026-12-07T05:00:00Z","started_at":null,'
    '"finished_at":null,"error":null,"last_event_id":1,"events_url":"/api/v1/builds/b1/events"}'
)


def test_a_build_as_json() -> None:
    assert BuildPublic.of(_failed(), URL).model_dump_json() == FAILED_JSON
    assert BuildPublic.of(_queued(), URL).model_dump_json() == QUEUED_JSON


def test_a_builds_record_holds_every_field_and_reads_back_the_same() -> None:
    build = _failed()
    record = snapshot(build, owner="me")
    assert dataclasses.asdict(record) == {
        "id": "b1",
        "image": "r/binder/gh-org-repo:1a2b",
        "provider": "gh",
        "repository": "https://github.com/org/repo",
        "build_slug": "github.com/org/repo",
        "ref": "main",
        "commit": "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
        "status": "failed",
        "created_at": AT,
        "content_provider": "Git",
        "spec_key": "gh:github.com/org/repo",
        "requester": "alice",
        "requesters": ("alice", "bob"),
        "cached": False,
        "error_code": "build_failed",
        "error_message": "repo2docker exited with 1",
        "started_at": AT.replace(second=5),
        "finished_at": AT.replace(second=59),
        "phase_times": {
            "waiting": AT.isoformat(),
            "building": AT.replace(second=5).isoformat(),
        },
        "last_event_id": 3,
        "owner": None,  # it is over: nobody owns it
        "pid": 42,
        "log_path": "/logs/b1",
        "log_event_base": 2,
        "deadline": AT.replace(hour=6),
    }
    assert snapshot(_queued(), owner="me").owner == "me"

    # Back from the store, with its events or only its record: the same build, the same JSON.
    for events in (build.events(), []):
        again = restore(record, events, max_events=100)
        assert BuildPublic.of(again, URL).model_dump_json() == FAILED_JSON
        assert snapshot(again, owner="me") == record
        assert (again.requests, again.events()) == (1, events)


async def test_an_image_as_json(tmp_path: Path) -> None:
    store = await BuildStore.open(f"sqlite:///{tmp_path / 'store.sqlite'}", op_timeout=5.0)
    try:
        for who in ("bob", "alice"):
            store.touch_image(ImageTouch("r/p/a:1", "gh", REPO.build_slug, AT, requester=who, built=True))
        await store.flush()
        admin = ImageAdmin(store.db, None, forget=lambda images: None)
        found = await list_images(Identity(name="alice", kind="user"), admin, limit=10)
        assert json.loads(found.model_dump_json()) == {
            "images": [
                {
                    "image": "r/p/a:1",
                    "provider": "gh",
                    "repository": "github.com/org/repo",
                    "built_at": "2026-12-07T05:00:00Z",
                    "last_requested_at": "2026-12-07T05:00:00Z",
                    "requesters": ["bob", "alice"],
                }
            ]
        }
        assert found.model_dump_json() == (
            '{"images":[{"image":"r/p/a:1","provider":"gh","repository":"github.com/org/repo",'
            '"built_at":"2026-12-07T05:00:00Z","last_requested_at":"2026-12-07T05:00:00Z",'
            '"requesters":["bob","alice"]}]}'
        )
    finally:
        await store.aclose()


def test_the_public_image_is_the_image_info_field_for_field() -> None:
    # ImagePublic is read from an ImageInfo's attributes: a field added to one must be added to the other.
    public = {name: f.annotation for name, f in ImagePublic.model_fields.items()}
    assert get_type_hints(ImageInfo) == public
    assert list(get_type_hints(ImageInfo)) == list(public)  # and in the same order (the JSON's)
