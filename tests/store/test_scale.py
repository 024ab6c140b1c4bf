"""A store holding 100,000 builds still lists in milliseconds: every list walks an index, never the table.

Asserted on the query plans (and on the answers), not on time; bench/store.py prints the figures.
"""

from __future__ import annotations

from binder_service.store import BuildStore
from binder_service.store.db import Connection

N = 100_000
_COLUMNS = (
    'id, image, provider, repository, build_slug, ref, "commit", content_provider, requesters, status, '
    "cached, created_at, finished_at, phase_times, last_event_id"
)


async def _fill(conn: Connection, dialect: str) -> None:
    """N builds generated inside the database (fast): every 10th alice's, every 7th cached, most finished."""
    if dialect == "sqlite":
        series = f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {N}) "
        when = "datetime('2026-01-01', '+' || i || ' seconds')"
        row = (
            f"SELECT printf('b%06d', i), 'reg/img:' || i, 'git', 'u', 'slug', 'main', 'c', 'Git', '[]', "
            f"CASE WHEN i % 100 = 0 THEN 'running' ELSE 'ready' END, i % 7 = 0, {when}, {when}, '{{}}', 3 "
            "FROM s"
        )
        req = f"SELECT printf('b%06d', i), 'alice', {when}, i % 7 = 0 FROM s WHERE i % 10 = 0"
    else:
        series = ""
        when = "timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'"
        row = (
            "SELECT 'b' || lpad(i::text, 6, '0'), 'reg/img:' || i, 'git', 'u', 'slug', 'main', 'c', 'Git', "
            f"'[]', CASE WHEN i % 100 = 0 THEN 'running' ELSE 'ready' END, i % 7 = 0, {when}, {when}, "
            f"'{{}}', 3 FROM generate_series(1, {N}) AS i"
        )
        req = (
            f"SELECT 'b' || lpad(i::text, 6, '0'), 'alice', {when}, i % 7 = 0 "
            f"FROM generate_series(1, {N}) AS i WHERE i % 10 = 0"
        )
    await conn.execute(f"{series}INSERT INTO builds ({_COLUMNS}) {row}")
    await conn.execute(
        f"{series}INSERT INTO build_requesters (build_id, requester, created_at, cached) {req}"
    )
    if dialect == "postgresql":
        await conn.execute("ANALYZE")


async def _plan(store: BuildStore, conn: Connection, **query: object) -> str:
    sql, params = store.list_query(**query)  # type: ignore[arg-type]
    prefix = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
    rows = await conn.fetch(prefix + sql, params)
    return "\n".join(str(list(r.values())[-1]) for r in rows)


async def test_100k_builds_list_by_index(db_url: str) -> None:
    # Filling takes seconds on a busy machine: more than the usual per-operation timeout.
    store = await BuildStore.open(db_url, op_timeout=120.0)
    try:
        await _check(store)
    finally:
        await store.aclose()


async def _check(store: BuildStore) -> None:
    async with store.db.transaction() as conn:
        await _fill(conn, store.dialect)

    newest = await store.list_builds(limit=5)
    assert [b.id for b in newest] == ["b100000", "b099999", "b099998", "b099997", "b099996"]
    mine = await store.list_builds(requester="alice", limit=3)
    assert [b.id for b in mine] == ["b100000", "b099990", "b099980"]
    running = await store.list_builds(status="running", limit=2)
    assert [b.id for b in running] == ["b100000", "b099900"]
    assert len(await store.list_builds(cached=True, limit=1000)) == 1000
    assert "b099995" not in [b.id for b in await store.list_builds(limit=10)]  # cached: listed on request

    async with store.db.read() as conn:
        for query in (
            {},
            {"cached": True},
            {"status": "running"},
            {"requester": "alice"},
            {"requester": "alice", "status": "running"},
        ):
            plan = await _plan(store, conn, limit=100, **query)
            if store.dialect == "sqlite":
                # No full scan of builds, no sort of the whole result: an index walked newest first.
                assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (query, plan)
                assert "TEMP B-TREE" not in plan, (query, plan)
                assert "SCAN builds\n" not in plan + "\n", (query, plan)
            else:
                assert "Index" in plan, (query, plan)
                assert "Seq Scan on builds" not in plan, (query, plan)
