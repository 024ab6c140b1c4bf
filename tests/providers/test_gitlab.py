"""The `gl` provider against a local fake of GitLab's REST API v4 (tests/support/fake_apis.py)."""

from __future__ import annotations

import time

import httpx
import pytest
from pydantic import SecretStr

from binder_service.errors import (
    InvalidSpec,
    RateLimited,
    RefNotFound,
    RepoNotFound,
    RepoUnreachable,
    UpstreamError,
    UpstreamTimeout,
)
from binder_service.providers import RepoSpec
from binder_service.providers.gitlab import GitLabProvider, gitlab_api
from tests.support.fake_apis import FakeGitLab, sha_of

TOKEN = "glpat-s3cretTokenValue"


def make(
    http: httpx.AsyncClient, fake: FakeGitLab, *, token: str | None = None, timeout: float = 2.0
) -> GitLabProvider:
    api = gitlab_api(http, url=fake.url, token=SecretStr(token) if token else None, timeout=timeout)
    return GitLabProvider(api, web_url=fake.url, max_input_length=2048)


@pytest.fixture
def gl(http: httpx.AsyncClient, fake_gitlab: FakeGitLab) -> GitLabProvider:
    return make(http, fake_gitlab)


def spec(repo: str, ref: str) -> RepoSpec:
    return RepoSpec(provider="gl", repo=repo, ref=ref)


@pytest.mark.parametrize(
    ("text", "repo", "ref"),
    [
        ("gitlab-org%2Fgitlab-foss/HEAD", "gitlab-org/gitlab-foss", "HEAD"),
        ("group%2Fsub%2Fsubsub%2Fproject/main", "group/sub/subsub/project", "main"),
        ("group%2Fproject.git/v1.0", "group/project", "v1.0"),
        ("group%2Fproject/feature%2Fx", "group/project", "feature/x"),
        ("group%2Fproject/feature/x", "group/project", "feature/x"),
        ("Group%2Fmy.project_1-2/main", "Group/my.project_1-2", "main"),
    ],
)
def test_parse_spec(gl: GitLabProvider, text: str, repo: str, ref: str) -> None:
    assert gl.parse_spec(text) == spec(repo, ref)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("project/main", "not a GitLab project path"),
        ("group%2Fproject", "<URL-escaped namespace/project>/<ref>"),
        ("group%2Fproject/", "<URL-escaped namespace/project>/<ref>"),
        ("/main", "<URL-escaped namespace/project>/<ref>"),
        ("group%2F..%2Fx/main", "not a valid GitLab project path"),
        ("group%2F%2Fx/main", "not a valid GitLab project path"),
        ("group%2Fpro%20ject/main", "not a valid GitLab project path"),
        ("group%2Fproject/-main", "not a valid git ref"),
    ],
)
def test_parse_spec_rejects(gl: GitLabProvider, text: str, match: str) -> None:
    with pytest.raises(InvalidSpec, match=match):
        gl.parse_spec(text)


def test_from_repo(gl: GitLabProvider, fake_gitlab: FakeGitLab) -> None:
    base = fake_gitlab.url
    assert gl.from_repo(f"{base}/a/b/c", "HEAD") == spec("a/b/c", "HEAD")
    assert gl.from_repo(f"{base}/a/b.git", "main") == spec("a/b", "main")
    assert gl.from_repo(f"{base}/a/b/-/tree/feature/x", "HEAD") == spec("a/b", "feature/x")
    assert gl.from_repo("a/b", "dev") == spec("a/b", "dev")
    with pytest.raises(InvalidSpec, match="/-/tree/<ref>"):
        gl.from_repo(f"{base}/a/b/-/blob/main/README.md", "HEAD")
    with pytest.raises(InvalidSpec, match="names ref 'x' but ref 'y'"):
        gl.from_repo(f"{base}/a/b/-/tree/x", "y")


async def test_resolve(gl: GitLabProvider, fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.add_project("group/sub/project", branches={"main": sha_of("1"), "feature/x": sha_of("2")})
    resolved = await gl.resolve(spec("group/sub/project", "feature/x"))
    assert resolved.commit == sha_of("2")
    assert resolved.repo_url == f"{fake_gitlab.url}/group/sub/project.git"
    assert resolved.build_slug == f"{fake_gitlab.url.removeprefix('http://')}/group/sub/project"
    assert resolved.note is None
    [seen] = fake_gitlab.seen
    # Both the project path and the ref are URL-escaped, as GitLab requires.
    assert seen.path == "/api/v4/projects/group%2Fsub%2Fproject/repository/commits/feature%2Fx"
    assert "private-token" not in seen.headers
    assert "ratelimit-remaining" in {k.lower() for k in seen.answer_headers}
    assert (await gl.resolve(spec("group/sub/project", "HEAD"))).commit == sha_of("1")


async def test_missing_ref_and_project(gl: GitLabProvider, fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.add_project("group/project")
    with pytest.raises(RefNotFound, match="ref 'nope' not found in GitLab project group/project"):
        await gl.resolve(spec("group/project", "nope"))
    with pytest.raises(RepoNotFound, match="GitLab project group/none not found"):
        await gl.resolve(spec("group/none", "main"))
    assert [s.status for s in fake_gitlab.seen] == [404, 200, 404, 404]


async def test_private_project_needs_the_token(http: httpx.AsyncClient, fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.tokens.add(TOKEN)
    fake_gitlab.add_project("team/private", private=True)
    with pytest.raises(RepoNotFound):
        await make(http, fake_gitlab).resolve(spec("team/private", "main"))
    resolved = await make(http, fake_gitlab, token=TOKEN).resolve(spec("team/private", "main"))
    assert resolved.commit == sha_of("team/private@main")
    assert fake_gitlab.seen[-1].headers["private-token"] == TOKEN
    with pytest.raises(RepoUnreachable, match="rejected the configured credentials") as info:
        await make(http, fake_gitlab, token="wrong-" + TOKEN).resolve(spec("team/private", "main"))
    assert "s3cret" not in str(info.value)


async def test_master_main_fallback(gl: GitLabProvider, fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.add_project("group/project", default_branch="main")
    resolved = await gl.resolve(spec("group/project", "master"))
    assert (resolved.ref, resolved.commit) == ("main", sha_of("group/project@main"))
    assert resolved.note == "branch 'master' does not exist; using the default branch 'main'"


async def test_project_without_repository(gl: GitLabProvider, fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.add_project("group/empty", default_branch=None)
    with pytest.raises(RefNotFound):
        await gl.resolve(spec("group/empty", "master"))


async def test_rate_limit(gl: GitLabProvider, fake_gitlab: FakeGitLab) -> None:
    fake_gitlab.add_project("group/project")
    fake_gitlab.used = fake_gitlab.limit
    fake_gitlab.reset_at = int(time.time()) + 40
    with pytest.raises(
        RateLimited, match=r"^GitLab API rate limit reached; try again after .* UTC \(in (39|40) s\)$"
    ):
        await gl.resolve(spec("group/project", "main"))


@pytest.mark.parametrize(
    ("setup", "error", "match"),
    [
        ({"fail_status": 502}, RepoUnreachable, "^GitLab API answered 502$"),
        ({"malformed": "json"}, UpstreamError, "malformed JSON"),
        ({"malformed": "shape"}, UpstreamError, "without a valid 'id'"),
        ({"malformed": "html"}, UpstreamError, "malformed JSON"),
        ({"delay": 3}, UpstreamTimeout, r"within 0\.3s"),
    ],
)
async def test_failures(
    http: httpx.AsyncClient,
    fake_gitlab: FakeGitLab,
    setup: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    gl = make(http, fake_gitlab, timeout=0.3)
    fake_gitlab.add_project("group/project")
    for name, value in setup.items():
        setattr(fake_gitlab, name, value)
    with pytest.raises(error, match=match):
        await gl.resolve(spec("group/project", "main"))
