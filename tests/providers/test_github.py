"""The `gh` provider against a local fake of GitHub's REST API (tests/support/fake_apis.py)."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest
from pydantic import SecretStr

from binder_service.errors import (
    BinderError,
    InputTooLarge,
    InvalidSpec,
    RateLimited,
    RefNotFound,
    RepoNotFound,
    RepoUnreachable,
    UpstreamError,
    UpstreamTimeout,
)
from binder_service.images.naming import image_name
from binder_service.providers import RepoSpec
from binder_service.providers.github import GitHubProvider, github_api
from tests.support.fake_apis import FakeGitHub, sha_of
from tests.support.net import free_port

TOKEN = "ghp_s3cretTokenValue"


def make(
    http: httpx.AsyncClient,
    api_url: str,
    *,
    token: str | None = None,
    timeout: float = 2.0,
    not_found_ttl: float = 30.0,
    ref_cache_ttl: float = 0.0,
) -> GitHubProvider:
    api = github_api(http, api_url=api_url, token=SecretStr(token) if token else None, timeout=timeout)
    return GitHubProvider(
        api, max_input_length=2048, not_found_ttl=not_found_ttl, ref_cache_ttl=ref_cache_ttl
    )


@pytest.fixture
def gh(http: httpx.AsyncClient, fake_github: FakeGitHub) -> GitHubProvider:
    return make(http, fake_github.url)


def spec(repo: str, ref: str) -> RepoSpec:
    return RepoSpec(provider="gh", repo=repo, ref=ref)


# --- specs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "repo", "ref"),
    [
        ("binder-examples/requirements/HEAD", "binder-examples/requirements", "HEAD"),
        ("org/repo/main", "org/repo", "main"),
        ("org/repo.git/main", "org/repo", "main"),  # BinderHub strips .git
        ("Org/Repo/v1.0", "Org/Repo", "v1.0"),  # case kept
        ("org/repo/feature/with/slashes", "org/repo", "feature/with/slashes"),
        ("org/repo/feature%2Fescaped", "org/repo", "feature/escaped"),
        ("org/repo.name_x-y/" + "a" * 40, "org/repo.name_x-y", "a" * 40),
        ("org/repo/refs/pull/7/head", "org/repo", "refs/pull/7/head"),
    ],
)
def test_parse_spec(gh: GitHubProvider, text: str, repo: str, ref: str) -> None:
    assert gh.parse_spec(text) == RepoSpec(provider="gh", repo=repo, ref=ref)


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("org/repo", InvalidSpec, r"Did you mean 'org/repo/HEAD'\?"),
        ("org", InvalidSpec, "<org>/<repo>/<ref>"),
        ("", InvalidSpec, "empty"),
        ("/repo/main", InvalidSpec, "<org>/<repo>/<ref>"),
        ("org//main", InvalidSpec, "<org>/<repo>/<ref>"),
        ("org/repo/", InvalidSpec, "<org>/<repo>/<ref>"),
        ("../repo/main", InvalidSpec, "not a valid GitHub user"),
        ("org/../main", InvalidSpec, "not a valid GitHub repository name"),
        ("org/.git/main", InvalidSpec, "not a valid GitHub repository name"),  # "" after stripping
        ("org%2Fx/repo/main", InvalidSpec, "not a valid GitHub user"),
        ("org/re po/main", InvalidSpec, "repository name"),
        ("org/repo/-x", InvalidSpec, "not a valid git ref"),
        ("org/repo/a..b", InvalidSpec, "not a valid git ref"),
        ("org/repo/x%00", InvalidSpec, "not a valid git ref"),
        ("org/repo/" + "a" * 3000, InputTooLarge, "longer than"),
    ],
)
def test_parse_spec_rejects(gh: GitHubProvider, text: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        gh.parse_spec(text)


@pytest.mark.parametrize(
    ("repo", "ref", "expected"),
    [
        ("https://github.com/org/repo", "HEAD", ("org/repo", "HEAD")),
        ("https://github.com/org/repo.git", "main", ("org/repo", "main")),
        ("https://github.com/org/repo/", "v1", ("org/repo", "v1")),
        ("http://github.com/org/repo", "HEAD", ("org/repo", "HEAD")),
        ("https://github.com/org/repo/tree/feature/x", "HEAD", ("org/repo", "feature/x")),
        ("https://github.com/org/repo/tree/main", "main", ("org/repo", "main")),
        ("https://github.com/org/repo?tab=readme#top", "HEAD", ("org/repo", "HEAD")),
        ("org/repo", "dev", ("org/repo", "dev")),
    ],
)
def test_from_repo(gh: GitHubProvider, repo: str, ref: str, expected: tuple[str, str]) -> None:
    assert gh.from_repo(repo, ref) == spec(*expected)


@pytest.mark.parametrize(
    ("repo", "ref", "match"),
    [
        ("https://github.com/org", "HEAD", "<org>/<repo>"),
        ("https://github.com/org/repo/pull/1", "HEAD", "<org>/<repo>"),
        ("https://github.com/org/repo/tree/main", "dev", "the URL names ref 'main' but ref 'dev'"),
        ("https://github.com/org/repo/tree/", "HEAD", "<org>/<repo>"),
        ("org", "HEAD", "<org>/<repo>"),
    ],
)
def test_from_repo_rejects(gh: GitHubProvider, repo: str, ref: str, match: str) -> None:
    with pytest.raises(InvalidSpec, match=match):
        gh.from_repo(repo, ref)


# --- resolving ------------------------------------------------------------------------------------


async def test_cold_resolution(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    fake_github.add_repo("org", "repo", branches={"main": sha_of("1"), "feature/x": sha_of("2")})
    resolved = await gh.resolve(spec("org/repo", "main"))
    assert resolved.commit == sha_of("1")
    assert resolved.ref == "main"
    assert resolved.repo_url == "https://github.com/org/repo"
    assert resolved.build_slug == "github.com/org/repo"
    assert resolved.content_provider == "Git"
    assert resolved.note is None
    [seen] = fake_github.seen
    assert seen.path == "/repos/org/repo/commits/main"
    assert seen.headers["accept"] == "application/vnd.github.sha"
    assert seen.headers["x-github-api-version"] == "2022-11-28"
    assert seen.headers["user-agent"].startswith("binder-service/")
    assert "if-none-match" not in seen.headers
    assert "authorization" not in seen.headers
    # A branch with a slash is sent escaped, as octokit does, and still resolves.
    assert (await gh.resolve(spec("org/repo", "feature/x"))).commit == sha_of("2")
    assert fake_github.seen[-1].path == "/repos/org/repo/commits/feature%2Fx"
    assert all("/commits/" in s.path for s in fake_github.seen)  # the repository itself: never asked


async def test_etag_hit_reuses_the_sha(http: httpx.AsyncClient, fake_github: FakeGitHub) -> None:
    fake_github.tokens.add(TOKEN)
    gh = make(http, fake_github.url, token=TOKEN)
    fake_github.add_repo("org", "repo", branches={"main": sha_of("1")})
    first = await gh.resolve(spec("org/repo", "main"))
    remaining = fake_github.remaining("token")
    second = await gh.resolve(spec("org/repo", "main"))
    assert second == first
    cold, warm = fake_github.seen
    assert cold.status == 200
    assert warm.status == 304
    assert warm.headers["if-none-match"] == cold.answer_headers["ETag"]
    assert warm.answer_headers["ETag"] == cold.answer_headers["ETag"]
    # Authorised conditional requests that answer 304 cost no rate limit.
    assert fake_github.remaining("token") == remaining


async def test_etag_miss_after_the_branch_moved(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    repo = fake_github.add_repo("org", "repo", branches={"main": sha_of("1")})
    assert (await gh.resolve(spec("org/repo", "main"))).commit == sha_of("1")
    repo.branches["main"] = sha_of("2")
    assert (await gh.resolve(spec("org/repo", "main"))).commit == sha_of("2")  # conditional, but 200
    assert (await gh.resolve(spec("org/repo", "main"))).commit == sha_of("2")  # the new ETag: 304
    assert [s.status for s in fake_github.seen] == [200, 200, 304]
    assert fake_github.seen[1].headers["if-none-match"] != fake_github.seen[2].headers["if-none-match"]


async def test_names_are_case_insensitive_and_so_is_the_image_name(
    gh: GitHubProvider, fake_github: FakeGitHub
) -> None:
    fake_github.add_repo("org", "repo")
    one = await gh.resolve(spec("Org/Repo", "main"))
    two = await gh.resolve(spec("org/repo", "main"))
    assert one.commit == two.commit
    assert one.build_slug == two.build_slug == "github.com/org/repo"
    assert [s.status for s in fake_github.seen] == [200, 304]  # one ETag for both spellings
    # One repository at one commit: one image, however it was spelt (also without an API call).
    pinned = [await gh.resolve(spec(name, one.commit)) for name in ("ORG/REPO", "oRg/rEpO")]
    names = {image_name("p/", f"gh-{r.build_slug}", r.commit) for r in (one, two, *pinned)}
    assert len(names) == 1
    assert one.repo_url.endswith("/Org/Repo")  # the clone URL stays as asked: GitHub does not mind


async def test_full_sha_needs_no_request(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    resolved = await gh.resolve(spec("org/gone", "A" * 40))
    assert resolved.commit == "a" * 40
    assert fake_github.seen == []


async def test_concurrent_requests_share_one_lookup(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    fake_github.add_repo("org", "repo")
    fake_github.delay = 0.2
    results = await asyncio.gather(*(gh.resolve(spec("org/repo", "main")) for _ in range(50)))
    assert len({r.commit for r in results}) == 1
    assert len(fake_github.seen) == 1


async def test_missing_ref(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    fake_github.add_repo("org", "repo")
    with pytest.raises(RefNotFound, match="ref 'nope' not found in GitHub repository org/repo"):
        await gh.resolve(spec("org/repo", "nope"))
    assert [(s.path, s.status) for s in fake_github.seen] == [
        ("/repos/org/repo/commits/nope", 422),
        ("/repos/org/repo", 200),  # only on the not-found path: is it the repository that is missing?
    ]
    # Remembered for a short while: a broken link does not cost two requests each time.
    with pytest.raises(RefNotFound):
        await gh.resolve(spec("org/repo", "nope"))
    assert len(fake_github.seen) == 2


async def test_not_found_is_forgotten_after_its_ttl(http: httpx.AsyncClient, fake_github: FakeGitHub) -> None:
    gh = make(http, fake_github.url, not_found_ttl=0.05)
    repo = fake_github.add_repo("org", "repo")
    with pytest.raises(RefNotFound):
        await gh.resolve(spec("org/repo", "new"))
    repo.branches["new"] = sha_of("new")
    await asyncio.sleep(0.1)
    assert (await gh.resolve(spec("org/repo", "new"))).commit == sha_of("new")


async def test_missing_and_deleted_repository(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    with pytest.raises(RepoNotFound, match="GitHub repository org/nothing not found"):
        await gh.resolve(spec("org/nothing", "main"))
    fake_github.add_repo("org", "doomed")
    await gh.resolve(spec("org/doomed", "main"))
    fake_github.delete_repo("org", "doomed")
    with pytest.raises(RepoNotFound, match="org/doomed"):
        await gh.resolve(spec("org/doomed", "main"))  # the kept ETag does not hide the deletion
    assert fake_github.seen[-2].headers.get("if-none-match")
    assert fake_github.seen[-2].status == 404


async def test_private_repository_is_not_found_without_a_token(
    http: httpx.AsyncClient, fake_github: FakeGitHub
) -> None:
    fake_github.tokens.add(TOKEN)
    fake_github.add_repo("org", "secret", private=True)
    with pytest.raises(RepoNotFound, match="not found \\(or not public\\)"):
        await make(http, fake_github.url).resolve(spec("org/secret", "main"))
    resolved = await make(http, fake_github.url, token=TOKEN).resolve(spec("org/secret", "main"))
    assert resolved.commit == sha_of("org/secret@main")


async def test_empty_repository(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    fake_github.add_repo("org", "empty", branches={})
    with pytest.raises(RefNotFound, match="org/empty is empty"):
        await gh.resolve(spec("org/empty", "HEAD"))


async def test_head_tags_and_short_shas(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    fake_github.add_repo("org", "repo", branches={"main": sha_of("1")}, tags={"v1.0": sha_of("t")})
    assert (await gh.resolve(spec("org/repo", "HEAD"))).commit == sha_of("1")
    assert (await gh.resolve(spec("org/repo", "v1.0"))).commit == sha_of("t")
    assert (await gh.resolve(spec("org/repo", sha_of("t")[:10]))).commit == sha_of("t")


@pytest.mark.parametrize(("asked", "default"), [("master", "main"), ("main", "master"), ("master", "trunk")])
async def test_master_main_fallback(
    gh: GitHubProvider, fake_github: FakeGitHub, asked: str, default: str
) -> None:
    fake_github.add_repo("org", "repo", default_branch=default)
    resolved = await gh.resolve(spec("org/repo", asked))
    assert resolved.ref == default
    assert resolved.commit == sha_of(f"org/repo@{default}")
    assert resolved.note == f"branch {asked!r} does not exist; using the default branch {default!r}"
    assert [s.status for s in fake_github.seen] == [422, 200, 200]


async def test_no_fallback_for_other_refs(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    fake_github.add_repo("org", "repo", default_branch="main")
    with pytest.raises(RefNotFound, match="'develop'"):
        await gh.resolve(spec("org/repo", "develop"))
    fake_github.add_repo("org", "only-master", default_branch="master", branches={"master": sha_of("m")})
    assert (await gh.resolve(spec("org/only-master", "master"))).note is None


async def test_renamed_repository_redirect_is_followed(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    fake_github.add_repo("org", "old-name")
    fake_github.rename_repo("org", "old-name", "org", "new-name")
    resolved = await gh.resolve(spec("org/old-name", "main"))
    assert resolved.commit == sha_of("org/old-name@main")
    assert [s.status for s in fake_github.seen] == [301, 200]
    assert fake_github.seen[1].path.startswith("/repositories/")


async def test_redirect_to_another_host_is_refused(http: httpx.AsyncClient, fake_github: FakeGitHub) -> None:
    fake_github.tokens.add(TOKEN)
    gh = make(http, fake_github.url, token=TOKEN)
    fake_github.add_repo("org", "old")
    fake_github.rename_repo("org", "old", "org", "new")
    fake_github.url = fake_github.url.replace("127.0.0.1", "localhost")  # the 301 now points elsewhere
    with pytest.raises(RepoUnreachable, match="redirected to another host"):
        await gh.resolve(spec("org/old", "main"))
    assert len(fake_github.seen) == 1  # the token never went to the other origin


# --- rate limits ----------------------------------------------------------------------------------


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


@pytest.mark.parametrize("status", [403, 429])
async def test_rate_limit_gives_the_reset_time(
    gh: GitHubProvider, fake_github: FakeGitHub, status: int
) -> None:
    fake_github.add_repo("org", "repo")
    fake_github.rate_limit_status = status
    fake_github.exhaust(reset_in=120)
    with pytest.raises(RateLimited) as info:
        await gh.resolve(spec("org/repo", "main"))
    message = str(info.value)
    m = re.fullmatch(
        r"GitHub API rate limit reached; try again after (\d\d:\d\d:\d\d) UTC \(in (\d+) s\)", message
    )
    assert m, message
    assert m.group(1) == _clock(fake_github.reset_at)
    assert 115 <= int(m.group(2)) <= 120
    assert info.value.status == 429
    assert info.value.code == "rate_limited"
    # Until the reset, we do not ask again: it would only be refused (and could prolong the limit).
    with pytest.raises(RateLimited, match="try again after"):
        await gh.resolve(spec("org/repo", "other"))
    assert len(fake_github.seen) == 1


async def test_secondary_rate_limit_uses_retry_after(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    fake_github.add_repo("org", "repo")
    fake_github.secondary_retry_after = 30
    start = time.time()
    with pytest.raises(RateLimited, match=r"\(in 30 s\)") as info:
        await gh.resolve(spec("org/repo", "main"))
    clock = str(info.value).split("after ")[1][:8]
    assert clock in {_clock(start + 30), _clock(start + 31)}
    assert fake_github.remaining() > 0  # not the primary limit


async def test_rate_limit_in_the_past_or_nonsense(http: httpx.AsyncClient, fake_github: FakeGitHub) -> None:
    gh = make(http, fake_github.url)
    fake_github.add_repo("org", "repo")
    fake_github.exhaust(reset_in=-5)  # our clock is ahead of GitHub's
    with pytest.raises(RateLimited, match=r"\(in 0 s\)"):
        await gh.resolve(spec("org/repo", "main"))
    gh = make(http, fake_github.url)
    fake_github.exhaust(reset_in=10**12)
    with pytest.raises(RateLimited, match=r"\(in 3600 s\)"):  # bounded: never blocked for good
        await gh.resolve(spec("org/repo", "main"))


async def test_anonymous_conditional_requests_still_count(
    gh: GitHubProvider, fake_github: FakeGitHub
) -> None:
    """GitHub only waives 304s for authorised requests: without a token the ETag saves bandwidth only."""
    fake_github.add_repo("org", "repo")
    await gh.resolve(spec("org/repo", "main"))
    before = fake_github.remaining()
    await gh.resolve(spec("org/repo", "main"))
    assert fake_github.seen[-1].status == 304
    assert fake_github.remaining() == before - 1


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(gh: GitHubProvider, fake_github: FakeGitHub, status: int) -> None:
    fake_github.fail_status = status
    with pytest.raises(RepoUnreachable, match=f"^GitHub API answered {status}$"):
        await gh.resolve(spec("org/repo", "main"))


async def test_forbidden_without_rate_limit(gh: GitHubProvider, fake_github: FakeGitHub) -> None:
    fake_github.fail_status = 403  # remaining > 0: a permission problem, not a rate limit
    with pytest.raises(RepoUnreachable, match="refused the request \\(HTTP 403\\): Server Error"):
        await gh.resolve(spec("org/repo", "main"))


async def test_slow_api_times_out(http: httpx.AsyncClient, fake_github: FakeGitHub) -> None:
    gh = make(http, fake_github.url, timeout=0.3)
    fake_github.add_repo("org", "repo")
    fake_github.delay = 5
    # The fake would answer after 5 s: the error is our 0.3 s timeout cutting the call off.
    with pytest.raises(UpstreamTimeout, match=r"GitHub API did not answer within 0\.3s"):
        await gh.resolve(spec("org/repo", "main"))


async def test_connection_refused(http: httpx.AsyncClient) -> None:
    gh = make(http, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RepoUnreachable, match=r"cannot reach GitHub API at 127\.0\.0\.1"):
        await gh.resolve(spec("org/repo", "main"))


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("json", "GitHub API answered HTTP 200 with malformed JSON"),
        ("shape", "GitHub API answered without a valid 'sha'"),
        ("html", "GitHub API answered with '<html>.*' instead of a commit id"),
    ],
)
async def test_malformed_answers(gh: GitHubProvider, fake_github: FakeGitHub, kind: str, match: str) -> None:
    fake_github.add_repo("org", "repo")
    fake_github.malformed = kind
    with pytest.raises(UpstreamError, match=match) as info:
        await gh.resolve(spec("org/repo", "main"))
    assert type(info.value) is UpstreamError


async def test_malformed_repository_answer_on_the_not_found_path(
    gh: GitHubProvider, fake_github: FakeGitHub
) -> None:
    fake_github.add_repo("org", "repo")
    fake_github.malformed = "shape"  # the 422 is fine, the repository JSON is not
    with pytest.raises(UpstreamError, match="'default_branch'"):
        await gh.resolve(spec("org/repo", "master"))


async def test_token_is_sent_but_never_shown(http: httpx.AsyncClient, fake_github: FakeGitHub) -> None:
    fake_github.tokens.add(TOKEN)
    gh = make(http, fake_github.url, token=TOKEN, timeout=0.3)
    fake_github.add_repo("org", "repo")
    await gh.resolve(spec("org/repo", "main"))
    assert fake_github.seen[0].headers["authorization"] == f"Bearer {TOKEN}"

    async def failure(provider: GitHubProvider, ref: str, **switches: object) -> BinderError:
        for name, value in switches.items():
            setattr(fake_github, name, value)
        try:
            with pytest.raises(BinderError) as info:
                await provider.resolve(spec("org/repo", ref))
        finally:
            fake_github.fail_status, fake_github.delay, fake_github.malformed = None, 0.0, None
        return info.value

    errors = [
        await failure(make(http, fake_github.url, token="ghp_wrong-" + TOKEN), "main"),
        await failure(gh, "main", fail_status=502),
        await failure(gh, "main", delay=2),
        await failure(gh, "a", malformed="json"),  # on the not-found path: the repository answer
        await failure(gh, "b"),
    ]
    fake_github.exhaust("token")
    errors.append(await failure(gh, "main"))
    assert [type(e) for e in errors] == [
        RepoUnreachable,
        RepoUnreachable,
        UpstreamTimeout,
        UpstreamError,
        RefNotFound,
        RateLimited,
    ]
    assert "rejected the configured credentials (HTTP 401): Bad credentials" in errors[0].message
    for error in errors:
        assert "s3cret" not in str(error)
        assert "s3cret" not in repr(error.args)
