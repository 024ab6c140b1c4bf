"""Databases SQLAlchemy wrote are the store's own: the store's database layer (store/db/) stores every value
exactly as SQLAlchemy's types did (store/models.py: UtcDateTime, JSON, Boolean) and reads what they wrote,
on real SQLite and PostgreSQL. SQLAlchemy writes here as the store did before it had its own layer:
Core inserts on the models' tables."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from binder_service.auth import Identity
from binder_service.db_url import store_url
from binder_service.events import BuildEvent, Phase
from binder_service.images.admin import ImageAdmin, ImageInfo
from binder_service.images.registry.gc import ImageUse, SqlImageRecords
from binder_service.store import BuildStore, ImageTouch, leases, places
from binder_service.store.leases import Lease
from binder_service.store.migrate import in_transaction
from binder_service.store.models import BUILD_REQUESTERS, BUILDS, EVENTS, IMAGES, LEASES, PLACES, REQUESTS
from tests.support.postgres import Cluster
from tests.support.records import record

T = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
LATER = datetime.now(UTC).replace(microsecond=123456) + timedelta(days=1)  # leases still live
TTL = 3600.0
RECORD = record(
    "b1",
    spec_key="git/example.org-repo",
    requester="alice",
    requesters=("alice", "bob"),
    created_at=T,
    started_at=T + timedelta(seconds=1, microseconds=1),
    deadline=T + timedelta(hours=1),
    phase_times={"building": (T + timedelta(seconds=2)).isoformat()},
    last_event_id=2,
    owner="r1",
    pid=4321,
    log_path="/state/builds/b1/build.log",
    log_event_base=1,
    error_message="ünïcödé ✓",
)
FINISHED = record("b0", status="ready", created_at=T, finished_at=T, requesters=())
EVENTS_ = [
    BuildEvent(1, Phase.WAITING, "Waiting for build to start\n", queue_position=3),
    BuildEvent(2, Phase.BUILDING, "Step 1/2 : FROM base\n", image_name=RECORD.image),
]
TABLES = ("builds", "build_requesters", "events", "images", "build_leases", "admission_places", "requests")
REQUEST_AT = 1767323045.5


def _build_row(r: Any) -> dict[str, Any]:
    row = asdict(r)
    row["requesters"] = list(r.requesters)
    return row


def _write_with_sqlalchemy(conn: Connection, *, lease_until: datetime) -> None:
    """What the store wrote through SQLAlchemy for one running build, one finished one, and the rest."""
    conn.execute(insert(BUILDS), [_build_row(RECORD), _build_row(FINISHED)])
    conn.execute(
        insert(BUILD_REQUESTERS),
        [{"build_id": "b1", "requester": n, "created_at": T, "cached": False} for n in RECORD.requesters],
    )
    conn.execute(
        insert(EVENTS),
        [
            {
                "build_id": "b1",
                "event_id": e.id,
                "phase": e.phase.value,
                "message": e.message,
                "image_name": e.image_name,
                "code": e.code,
                "queue_position": e.queue_position,
                "created_at": T + timedelta(microseconds=e.id),
            }
            for e in EVENTS_
        ],
    )
    conn.execute(
        insert(IMAGES),
        {
            "image": RECORD.image,
            "provider": "git",
            "build_slug": RECORD.build_slug,
            "built_at": T,
            "last_requested_at": T,
            "requesters": ["alice"],
        },
    )
    conn.execute(
        insert(LEASES),
        {
            "image": RECORD.image,
            "build_id": "b1",
            "owner": "r1",
            "lease_until": lease_until,
            "cancel_requested": True,
        },
    )
    conn.execute(
        insert(PLACES), {"ticket": "t1", "key": "user:alice", "owner": "r1", "lease_until": lease_until}
    )
    conn.execute(insert(REQUESTS), {"requester": "alice", "at": REQUEST_AT})


async def _write_with_the_store(store: BuildStore) -> None:
    """The same, through the store's own layer (its lease and place statements at a fixed time)."""
    store.save_build(RECORD)
    store.save_build(FINISHED)
    for e in EVENTS_:
        store.add_event("b1", e, at=T + timedelta(microseconds=e.id))
    store.touch_image(ImageTouch(RECORD.image, "git", RECORD.build_slug, T, "alice", built=True))
    await store.flush()
    async with store.db.transaction() as conn:
        assert await leases.claim(conn, RECORD, ttl=TTL, now=T) is None
        assert await leases.request_cancel(conn, "b1")
        assert await places.take(conn, "t1", [("user:alice", 2)], owner="r1", ttl=TTL, now=T) is None
    await store.record_request("alice", REQUEST_AT, 60)


@pytest.fixture
def other_url(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A second empty database beside `db_url`'s."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.sqlite'}"
    cluster: Cluster = request.getfixturevalue("pg")
    return cluster.create_database()


async def _dump(url: str) -> dict[str, list[Any]]:
    """Every row of every table as the database holds it (SQLite: its stored values; PostgreSQL: text)."""
    target = store_url(url)
    if target.backend == "sqlite":
        with sqlite3.connect(target.path) as raw:
            return {t: raw.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    raw_pg = await asyncpg.connect(**target.connect)
    try:
        return {
            t: [r[0] for r in await raw_pg.fetch(f"SELECT x::text FROM {t} AS x ORDER BY 1")] for t in TABLES
        }
    finally:
        await raw_pg.close()


async def test_the_store_stores_every_value_as_sqlalchemy_did(db_url: str, other_url: str) -> None:
    for url in (db_url, other_url):  # both at this release's schema
        await (await BuildStore.open(url, op_timeout=10.0)).aclose()
    await in_transaction(
        db_url, lambda c: _write_with_sqlalchemy(c, lease_until=T + timedelta(seconds=TTL)), op_timeout=10.0
    )
    store = await BuildStore.open(other_url, op_timeout=10.0)
    try:
        await _write_with_the_store(store)
    finally:
        await store.aclose()
    by_sqlalchemy, by_store = await _dump(db_url), await _dump(other_url)
    for table in TABLES:
        assert by_store[table] == by_sqlalchemy[table], table
    target = store_url(db_url)
    if target.backend == "sqlite":
        with sqlite3.connect(target.path) as raw:
            stored = raw.execute(
                "SELECT created_at, requesters, cached FROM builds WHERE id = 'b1'"
            ).fetchone()
            cancel = raw.execute("SELECT cancel_requested FROM build_leases").fetchone()
        # Naive UTC in SQLAlchemy's DateTime format, json.dumps, booleans 0/1.
        assert stored == ("2026-01-02 03:04:05.678901", '["alice", "bob"]', 0)
        assert cancel == (1,)


async def test_what_sqlalchemy_wrote_reads_back_through_the_store(db_url: str) -> None:
    await (await BuildStore.open(db_url, op_timeout=10.0)).aclose()
    await in_transaction(db_url, lambda c: _write_with_sqlalchemy(c, lease_until=LATER), op_timeout=10.0)
    store = await BuildStore.open(db_url, op_timeout=10.0)
    try:
        assert await store.get_build("b1") == RECORD
        assert await store.get_build("b0") == FINISHED
        assert await store.events("b1") == EVENTS_
        assert await store.list_builds(requester="bob") == [RECORD]
        assert await store.active_builds(owner="r1") == [RECORD]
        assert await store.count_active(requester="alice", spec_keys=[RECORD.spec_key or ""]) == 1
        assert await store.is_requester("b1", "bob")
        assert await store.lease_of("b1") == Lease(RECORD.image, "b1", "r1", LATER)
        assert await store.cancel_requests("r1", ["b1", "b9"]) == ["b1"]
        assert not await store.expire("b1")  # its lease is live: compared with now as SQLAlchemy stored it
        assert await store.oldest_request("alice", since=0) == REQUEST_AT
        # alice's one live place (SQLAlchemy's) is counted: a limit of 1 is full, 2 is not.
        assert await store.take_places("t2", [("user:alice", 1)], owner="r2", ttl=30) == "user:alice"
        assert await store.take_places("t3", [("user:alice", 2)], owner="r2", ttl=30) is None
        assert await SqlImageRecords(store.db).images() == [ImageUse(RECORD.image, T, T)]
        admin = ImageAdmin(store.db, None, forget=lambda images: None)
        assert await admin.list(Identity("alice", "user")) == [
            ImageInfo(RECORD.image, "git", RECORD.build_slug, T, T, ["alice"])
        ]
        # Stored times compare with bound ones to the microsecond: b0 finished at T exactly.
        assert await store.purge(timedelta(0), now=T) == []
        assert [p.id for p in await store.purge(timedelta(0), now=T + timedelta(microseconds=1))] == ["b0"]
    finally:
        await store.aclose()
