"""The `gist` provider against the fake GitHub API's `/gists/{id}`."""

from __future__ import annotations

import httpx
import pytest

from binder_service.errors import InvalidSpec, RefNotFound, RepoNotAllowed, RepoNotFound, UpstreamError
from binder_service.providers import RepoSpec
from binder_service.providers.gist import GistProvider
from binder_service.providers.github import github_api
from tests.support.fake_apis import FakeGitHub, sha_of

GIST = "6cad326836d38bd3a7ae"
NEW, OLD = sha_of("v2"), sha_of("v1")


def make(http: httpx.AsyncClient, fake: FakeGitHub, *, allow_secret: bool = False) -> GistProvider:
    api = github_api(http, api_url=fake.url, token=None, timeout=2.0)
    return GistProvider(api, allow_secret=allow_secret, max_input_length=2048)


@pytest.fixture
def gist(http: httpx.AsyncClient, fake_github: FakeGitHub) -> GistProvider:
    fake_github.add_gist(GIST, owner="octocat", versions=[NEW, OLD])
    return make(http, fake_github)


def spec(repo: str, ref: str = "HEAD") -> RepoSpec:
    return RepoSpec(provider="gist", repo=repo, ref=ref)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"octocat/{GIST}", spec(f"octocat/{GIST}")),
        (f"octocat/{GIST}/", spec(f"octocat/{GIST}")),
        (f"octocat/{GIST}/{OLD}", spec(f"octocat/{GIST}", OLD)),
        (f"octocat/{GIST}.git/master", spec(f"octocat/{GIST}", "master")),
    ],
)
def test_parse_spec(gist: GistProvider, text: str, expected: RepoSpec) -> None:
    assert gist.parse_spec(text) == expected


@pytest.mark.parametrize("text", [GIST, f"/{GIST}", "octocat/", "octocat/not-hex!", f"..%2F/{GIST}"])
def test_parse_spec_rejects(gist: GistProvider, text: str) -> None:
    with pytest.raises(InvalidSpec):
        gist.parse_spec(text)


@pytest.mark.parametrize(
    ("repo", "ref", "expected"),
    [
        (f"https://gist.github.com/octocat/{GIST}", "HEAD", spec(f"octocat/{GIST}")),
        (f"https://gist.github.com/{GIST}", "HEAD", spec(GIST)),
        (f"https://gist.github.com/{GIST}.git", "HEAD", spec(GIST)),
        (f"https://gist.github.com/octocat/{GIST}/{OLD}", "HEAD", spec(f"octocat/{GIST}", OLD)),
        (f"octocat/{GIST}", OLD, spec(f"octocat/{GIST}", OLD)),
    ],
)
def test_from_repo(gist: GistProvider, repo: str, ref: str, expected: RepoSpec) -> None:
    assert gist.from_repo(repo, ref) == expected


async def test_resolve_newest_and_older_revisions(gist: GistProvider, fake_github: FakeGitHub) -> None:
    newest = await gist.resolve(spec(f"octocat/{GIST}"))
    assert newest.commit == NEW
    assert newest.repo_url == f"https://gist.github.com/{GIST}.git"
    assert newest.build_slug == f"gist.github.com/{GIST}"
    assert (await gist.resolve(spec(GIST, "master"))).commit == NEW
    assert (await gist.resolve(spec(GIST, OLD.upper()))).commit == OLD
    with pytest.raises(RefNotFound, match=f"revision 'nope' not found in gist {GIST}"):
        await gist.resolve(spec(GIST, "nope"))
    # The gist was fetched once; every later lookup revalidated it with its ETag.
    assert [s.status for s in fake_github.seen] == [200, 304, 304, 304]
    assert all(s.path == f"/gists/{GIST}" for s in fake_github.seen)


async def test_a_new_revision_is_seen(gist: GistProvider, fake_github: FakeGitHub) -> None:
    await gist.resolve(spec(GIST))
    newer = sha_of("v3")
    fake_github.gists[GIST].versions.insert(0, newer)
    assert (await gist.resolve(spec(GIST))).commit == newer


async def test_missing_gist(gist: GistProvider) -> None:
    with pytest.raises(RepoNotFound, match="gist abcdef not found"):
        await gist.resolve(spec("octocat/abcdef"))


async def test_secret_gists_only_when_allowed(http: httpx.AsyncClient, fake_github: FakeGitHub) -> None:
    fake_github.add_gist("abc123", owner="octocat", versions=[NEW], public=False)
    with pytest.raises(RepoNotAllowed, match="secret"):
        await make(http, fake_github).resolve(spec("octocat/abc123"))
    assert (await make(http, fake_github, allow_secret=True).resolve(spec("octocat/abc123"))).commit == NEW


@pytest.mark.parametrize("kind", ["json", "shape", "html"])
async def test_malformed(gist: GistProvider, fake_github: FakeGitHub, kind: str) -> None:
    fake_github.malformed = kind
    with pytest.raises(UpstreamError):
        await gist.resolve(spec(GIST))
