"""The jupyterhub-fancy-profiles / binderhub JS client flow, unchanged, against the real hub and service.

The client asks `<hub>/services/binder/build/<provider>/<spec>?build_only=true` with the user's token
as `Authorization: Bearer`, reads the event stream to `{"phase": "ready", "imageName": ...}`, then
starts the user's server with that image (with KubeSpawner: the profile's `unlisted_choice` image;
no Kubernetes runs here, so DockerSpawner's `image` user option plays that part, and
tests/hub_extension/test_kubespawner.py checks KubeSpawner's side without a cluster).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.support.hub import Hub
from tests.support.records import MakeRepo
from tests.support.service import sse_messages

pytestmark = [pytest.mark.docker, pytest.mark.hub]


def test_binderhub_client_flow_builds_and_the_image_runs(
    hub: Hub, make_hub_repo: MakeRepo, username: str
) -> None:
    repo, marker = make_hub_repo()
    token = hub.user_token(username)
    url = f"{hub.service_url}build/git/{quote(repo, safe='')}/main?build_only=true"
    events = sse_messages(url, headers={"Authorization": f"Bearer {token}"}, timeout=600)
    phases = [e["phase"] for e in events]
    assert phases[-1] == "ready", events[-3:]
    assert "building" in phases
    image = events[-1]["imageName"]
    assert image.startswith("127.0.0.1:5055/")

    # The client then starts the server with that image.
    r = hub.spawn(username, {"image": image})
    assert r.status_code in (201, 202), r.text
    assert hub.progress(username)[-1].get("ready") is True
    contents = httpx.get(
        f"{hub.url}/user/{username}/api/contents/marker.txt",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert contents.status_code == 200, contents.text
    assert contents.json()["content"].strip() == marker
    hub.stop(username)


def test_binderhub_api_needs_a_token(hub: Hub, make_hub_repo: MakeRepo) -> None:
    repo, _ = make_hub_repo()
    url = f"{hub.service_url}build/git/{quote(repo, safe='')}/main?build_only=true"
    r = httpx.get(url, timeout=30)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "unauthorized"
    bad = httpx.get(url, headers={"Authorization": "Bearer not-a-token"}, timeout=30)
    assert bad.status_code == 401, bad.text


def test_token_without_build_scope_is_refused(hub: Hub, make_hub_repo: MakeRepo, username: str) -> None:
    repo, _ = make_hub_repo()
    token = hub.user_token(username, scopes=["read:users:name!user"])
    url = f"{hub.service_url}build/git/{quote(repo, safe='')}/main?build_only=true"
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 403, r.text
