"""A real Chromium logs in to the real hub, builds from a repository on the spawn page, reaches the server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.support.browser import chromium
from tests.support.hub import Hub
from tests.support.records import MakeRepo

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.browser]

# Records every line the spawn-pending page adds to its progress log, across the page's navigations
# (hub and servers share the proxy's origin), so the test sees them even after the page moved on.
RECORD_PROGRESS = """
document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("progress-log");
  if (!log) return;
  new MutationObserver(() => {
    const seen = [...log.querySelectorAll(".progress-log-event")].map((e) => e.textContent);
    localStorage.setItem("binderProgress", JSON.stringify(seen));
  }).observe(log, {childList: true});
});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.add_init_script(RECORD_PROGRESS)
    p = context.new_page()
    p.set_default_timeout(30_000)
    yield p
    context.close()


def login(page: Page, hub: Hub, user: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", hub.password)
    page.click("#login_submit")
    page.wait_for_url("**/hub/**")


def test_build_from_repository_in_the_browser(
    hub: Hub, make_hub_repo: MakeRepo, username: str, page: Page
) -> None:
    repo, marker = make_hub_repo()
    login(page, hub, username)
    page.goto(f"{hub.url}/hub/spawn")
    section = page.locator("#binder-build-section")
    assert "Build from repository" in section.inner_text()
    page.check("#binder-build")
    page.fill("#binder-repo", repo)
    page.fill("#binder-ref", "main")
    page.click("#spawn_form button[type=submit]")

    # The spawn-pending page shows the build's progress live ...
    page.wait_for_url(f"**/hub/spawn-pending/{username}**")
    page.wait_for_selector("#progress-log .progress-log-event", state="attached")
    # ... and moves on to the server, started from the freshly built image (JupyterLab, default_url /lab).
    page.wait_for_url(f"**/user/{username}/lab**", timeout=600_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    seen = json.loads(page.evaluate("localStorage.getItem('binderProgress') || '[]'"))
    assert any(m.startswith("Requesting an image of " + repo) for m in seen), seen
    assert any(m.startswith("Building:") for m in seen), seen
    assert any(m.startswith("Starting your server with image ") for m in seen), seen

    # The repository's content, served by that server through the proxy.
    page.goto(f"{hub.url}/user/{username}/files/marker.txt")
    assert page.locator("body").inner_text().strip() == marker
    hub.stop(username)


def test_failed_build_is_shown_on_the_spawn_page(
    hub: Hub, make_hub_repo: MakeRepo, username: str, page: Page
) -> None:
    repo, _ = make_hub_repo(fail=True)
    login(page, hub, username)
    page.goto(f"{hub.url}/hub/spawn")
    page.check("#binder-build")
    page.fill("#binder-repo", repo)
    page.fill("#binder-ref", "main")
    page.click("#spawn_form button[type=submit]")
    page.wait_for_url(f"**/hub/spawn-pending/{username}**")
    message = page.locator("#progress-message")
    message.filter(has_text="Spawn failed: ").wait_for(timeout=300_000)
    shown = message.inner_text()
    # The build's own message, as binder-service reported it (the failed build of this repository).
    r = hub.api("GET", f"/users/{username}")
    assert r.json()["servers"] == {}
    builds = [b for b in hub.service_builds() if b["repo"] == repo and b["status"] == "failed"]
    assert builds, "binder-service has no failed build of the repository"
    assert shown.strip() == "Spawn failed: " + builds[-1]["error"]["message"].strip()
    assert "bg-danger" in (page.locator("#progress-bar").get_attribute("class") or "")
