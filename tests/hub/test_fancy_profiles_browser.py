"""jupyterhub-fancy-profiles' real spawn form ("Build your own image") in Chromium, against binder-service.

The hub 2i2c runs (tests/support/fancy_hub.py): KubeSpawner's profile form rendered by fancy-profiles'
template and built JavaScript from its PyPI wheel; binder-service as the hub service `binder`, its `gh`
provider on a GitHub-Enterprise-style pair on loopback (the REST API fake in GitHub's response shapes
resolves the ref, a git server serves the clone URL). The form mints a token of the user, streams
`/services/binder/build/gh/<org>/<repo>/<ref>?build_only=true` into its log terminal and, at `ready`,
puts the image name into the profile's image field and submits the form. No Kubernetes runs here, so
the test stops there: it takes the submitted form instead of letting KubeSpawner try to start a pod.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route

import world
from binder_service.images.registry.client import MANIFEST_TYPES, split_image
from tests.support.browser import chromium
from tests.support.fake_apis import FakeGitHub
from tests.support.fancy_hub import IMAGE_FIELD, PROFILE, running_fancy_hub
from tests.support.gitserve import make_repo
from tests.support.hub import Hub

pytestmark = [pytest.mark.docker, pytest.mark.hub, pytest.mark.browser]

RUN_ID = uuid.uuid4().hex[:6]
BUILD_PATH = "/services/binder/build/"
# What the page's event-stream client reads from binder-service, as it reads it: fetch is wrapped
# before the page's scripts run and the build stream's body is teed into sessionStorage.
RECORD_STREAM = """
(() => {
  const fetchOf = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const response = await fetchOf(input, init);
    const url = String(input instanceof Request ? input.url : input);
    if (!url.includes("@BUILD_PATH@") || !response.body) return response;
    const [mine, theirs] = response.body.tee();
    (async () => {
      const reader = mine.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) return;
        text += value;
        sessionStorage.setItem("binderStream", text);
      }
    })().catch(() => {});  // the client aborts the stream once it read `ready`
    return new Response(theirs, {status: response.status, statusText: response.statusText,
                                 headers: response.headers});
  };
})();
""".replace("@BUILD_PATH@", BUILD_PATH)
# Every text the form's log terminal (xterm, DOM renderer) shows, kept across the page's navigations:
# its rows are rewritten as the log scrolls, so each new screen is recorded (rows joined: a wrapped line
# reads whole again).
RECORD_TERMINAL = """
(() => {
  const seen = () => JSON.parse(sessionStorage.getItem("fancyTerminal") || "[]");
  new MutationObserver(() => {
    const rows = document.querySelector(".xterm-rows");
    if (!rows) return;
    const screen = [...rows.children].map((r) => r.textContent.replace(/\\u00a0/g, " ")).join("");
    const all = seen();
    if (all[all.length - 1] !== screen) {
      all.push(screen);
      sessionStorage.setItem("fancyTerminal", JSON.stringify(all));
    }
  }).observe(document, {childList: true, subtree: true, characterData: true});
})();
"""


@pytest.fixture(scope="module")
def github_api() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def fancy_hub(
    world_env: dict[str, str],
    github_api: FakeGitHub,
    git_http_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Hub]:
    with running_fancy_hub(
        tmp_path_factory.mktemp("fancy-hub"),
        world_env=world_env,
        github_api_url=github_api.url,
        github_url=git_http_url.rstrip("/"),
        image_prefix=f"fancytest-{RUN_ID}/",
        default_image=world.BUSYBOX_IMAGE,
    ) as hub:
        yield hub


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()  # a fresh origin storage: fancy-profiles caches its token there
    context.add_init_script(RECORD_TERMINAL)
    context.add_init_script(RECORD_STREAM)
    p = context.new_page()
    p.set_default_timeout(60_000)
    yield p
    context.close()


def github_repo(git_root: Path, github_api: FakeGitHub, *, fail: bool = False) -> tuple[str, str, str]:
    """A repository on the loopback "GitHub": (org/repo as typed, its commit, a text its build prints).

    Capitalised as GitHub names often are; its Dockerfile builds on the world's busybox image (and
    with `fail`, its RUN step exits 3)."""
    org, name = "Binder-Test", f"Fancy-{uuid.uuid4().hex[:8]}"
    marker = f"fancy-{uuid.uuid4().hex[:10]}"
    run = f"echo {marker}-built" + (" && exit 3" if fail else "")
    dockerfile = f"FROM {world.BUSYBOX_IMAGE}\nCOPY marker.txt /marker.txt\nRUN {run}\n"
    commit = make_repo(git_root, f"{org}/{name}", {"Dockerfile": dockerfile, "marker.txt": marker + "\n"})
    github_api.add_repo(org, name, branches={"main": commit})
    return f"{org}/{name}", commit, marker


@dataclass
class Attempt:
    """What the page sent: the build requests of its event-stream client, the spawn form it submitted."""

    builds: list[Request] = field(default_factory=list)
    submitted: list[Request] = field(default_factory=list)


def build_in_the_form(page: Page, hub: Hub, repo: str, ref: str) -> Attempt:
    """Log in as a new user, pick "Build your own image", enter `repo` and `ref`, click the button; return
    once the form was submitted (and taken) or shows why not."""
    attempt = Attempt()
    page.on("request", lambda r: attempt.builds.append(r) if BUILD_PATH in r.url else None)

    def take_the_form(route: Route, request: Request) -> None:
        if request.method != "POST":
            route.continue_()
            return
        attempt.submitted.append(request)  # KubeSpawner would now ask a Kubernetes API that is not there
        route.fulfill(status=200, content_type="text/html", body="<p id=taken>form taken by the test</p>")

    page.route("**/hub/spawn**", take_the_form)
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", f"u{uuid.uuid4().hex[:8]}")
    page.fill("input[name=password]", hub.password)
    page.click("#login_submit")
    page.wait_for_url("**/hub/**")
    page.goto(f"{hub.url}/hub/spawn")

    # fancy-profiles' React form (not KubeSpawner's own): the profile, its image option, the build choice.
    page.locator(f"#profile-{PROFILE} .select__control").click()
    page.get_by_text("Build your own image", exact=True).click()
    page.fill(f"#{IMAGE_FIELD}--repo", repo)
    page.fill(f"#{IMAGE_FIELD}--ref", ref)
    # The log terminal is set up (the build writes into it) before the button may be used.
    page.locator(".xterm-rows").filter(has_text="Logs will appear here").wait_for()
    page.get_by_role("button", name="Build Image and Start").click()
    # Either the form was submitted (taken by the route above) or it shows why not (a failed build).
    page.locator("#taken, #form .invalid-feedback").first.wait_for(timeout=600_000)
    return attempt


def recorded(page: Page) -> tuple[list[dict[str, Any]], list[str]]:
    """(the build stream's messages as the page's client read them, every screen its log terminal showed)."""
    stream = page.evaluate("sessionStorage.getItem('binderStream') || ''")
    events = [json.loads(line[5:]) for line in stream.splitlines() if line.startswith("data:")]
    screens = json.loads(page.evaluate("sessionStorage.getItem('fancyTerminal') || '[]'"))
    return events, screens


def test_build_your_own_image_fills_the_image_field(
    fancy_hub: Hub, github_api: FakeGitHub, git_root: Path, world_env: dict[str, str], page: Page
) -> None:
    repo, commit, marker = github_repo(git_root, github_api)
    attempt = build_in_the_form(page, fancy_hub, repo, "main")
    shown = page.locator("#form .invalid-feedback").all_inner_texts()
    assert attempt.submitted, f"the form shows {shown}; binder-service: {fancy_hub.service_builds()}"

    # The form asked binder-service's BinderHub face, with a token it minted for the user ...
    (asked,) = attempt.builds
    assert urlsplit(asked.url).path == f"{BUILD_PATH}gh/{repo}/main", asked.url
    assert parse_qs(urlsplit(asked.url).query) == {"build_only": ["true"]}, asked.url
    assert asked.all_headers().get("authorization", "").startswith("Bearer "), "no Bearer token sent"
    # ... and the build streamed to `ready` in the page: the stream its client read, the log it showed.
    events, screens = recorded(page)
    phases = [e.get("phase") for e in events]
    assert phases[-1] == "ready", phases
    assert {"building", "pushing"} <= set(phases), phases
    assert any(f"{marker}-built" in s for s in screens), screens

    # The image binder-service built and pushed is the one in the form's image field ...
    (submitted,) = attempt.submitted
    form = form_fields(submitted)
    assert form["profile"] == PROFILE, form
    image = form[IMAGE_FIELD]
    builds = fancy_hub.service_builds()
    mine = [b for b in builds if b["provider"] == "gh" and b["commit"] == commit]
    assert [b["status"] for b in mine] == ["ready"], mine
    assert image == mine[0]["image_name"] == events[-1]["imageName"]
    assert image.startswith(f"{world_env['BINDER_WORLD_REGISTRY']}/fancytest-{RUN_ID}/"), image
    # ... its commit resolved through the GitHub API ...
    assert github_api.requests_to(f"/repos/{repo}/commits/main"), github_api.seen
    # ... and in the registry.
    host, path, tag = split_image(image)
    r = httpx.head(f"http://{host}/v2/{path}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=30)
    assert r.status_code == 200, (image, r.status_code)


def test_a_failed_build_is_shown_in_the_form(
    fancy_hub: Hub, github_api: FakeGitHub, git_root: Path, page: Page
) -> None:
    repo, commit, marker = github_repo(git_root, github_api, fail=True)
    attempt = build_in_the_form(page, fancy_hub, repo, "main")
    assert not attempt.submitted, "a failed build still submitted the form"
    assert page.locator("#form .invalid-feedback").all_inner_texts() == ["image build failed"]
    (build,) = [b for b in fancy_hub.service_builds() if b["provider"] == "gh" and b["commit"] == commit]
    assert build["status"] == "failed", build
    # The stream ended with binder-service's `failed` event, and its message is in the form's log.
    events, screens = recorded(page)
    assert events[-1]["phase"] == "failed", events[-3:]
    assert "exit code: 3" in build["error"]["message"], build
    assert any(f"{marker}-built" in s for s in screens), screens
    assert any("exit code: 3" in s for s in screens), screens[-1:]


def form_fields(request: Request) -> dict[str, str]:
    """The fields of a submitted form, as the hub would read them (JupyterHub's form is multipart)."""
    content_type = request.headers.get("content-type", "")
    body = request.post_data_buffer or b""
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v[-1] for k, v in parse_qs(body.decode()).items()}
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert isinstance(message, EmailMessage), content_type
    assert message.is_multipart(), content_type
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        fields[str(part.get_param("name", header="content-disposition"))] = str(part.get_content())
    return fields
