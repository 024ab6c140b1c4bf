"""Two replicas on one PostgreSQL: one history, and any build's events and log from either."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from binder_service.settings import Settings
from tests.support.postgres import Cluster
from tests.support.repos import buildable_repo
from tests.support.service import running_service, sse_messages

pytestmark = pytest.mark.docker


def test_two_replicas_share_history_events_and_logs(
    pg: Cluster,
    make_settings: Callable[..., Settings],
    git_root: Path,
    git_daemon_url: str,
    tmp_path: Path,
) -> None:
    url = pg.create_database()
    common = {"db_url": url}
    auth: dict[str, str] = {}  # open services on loopback (admission across replicas: test_admission.py)
    one = make_settings(state_dir=tmp_path / "a", **common)
    two = make_settings(state_dir=tmp_path / "b", image_prefix=one.image_prefix, **common)
    name, _ = buildable_repo(git_root)
    with running_service(one) as a, running_service(two) as b:
        made = httpx.post(
            f"{a}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, headers=auth, timeout=30
        )
        assert made.status_code == 201, made.text
        build = made.json()
        # Replica b never ran it: its events come from the store, live, to the end.
        events = sse_messages(f"{b}api/v1/builds/{build['id']}/events", headers=auth)
        assert events[-1]["phase"] == "ready"
        assert [e["_id"] for e in events] == list(range(1, len(events) + 1))
        listed = httpx.get(f"{b}api/v1/builds", headers=auth, timeout=10).json()["builds"]
        assert [x["id"] for x in listed] == [build["id"]]
        assert listed[0]["status"] == "ready"
        log = httpx.get(f"{b}api/v1/builds/{build['id']}/log", headers=auth, timeout=10).text
        assert name in log
