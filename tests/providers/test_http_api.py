"""The shared REST plumbing: answers read in full and bounded, rate-limit headers, JSON field access."""

from __future__ import annotations

import ssl
import time
from email.utils import formatdate

import httpx
import pytest

from binder_service.caching import LookupCache
from binder_service.errors import RateLimited, RefNotFound, RepoNotFound, RepoUnreachable, UpstreamError
from binder_service.providers import http_api
from binder_service.providers.http_api import HttpApi, Reply, pick
from tests.support.fake_apis import FakeGitHub

_UNUSED = httpx.AsyncClient(verify=ssl.create_default_context())  # `_check` never sends anything


def check(status: int, headers: dict[str, str], body: bytes = b"{}") -> Reply:
    api = HttpApi(_UNUSED, name="GitHub API", base_url="https://api.example", timeout=1)
    return api._check(Reply("GitHub API", status, httpx.Headers(headers), body))


def test_retry_after_as_http_date() -> None:
    when = formatdate(time.time() + 90, usegmt=True)
    with pytest.raises(RateLimited, match=r"\(in (89|90) s\)"):
        check(429, {"retry-after": when})


def test_rate_limit_without_a_time() -> None:
    with pytest.raises(RateLimited, match=r"^GitHub API rate limit reached; try again later$"):
        check(429, {})


def test_gitlab_headers() -> None:
    reset = int(time.time()) + 300
    with pytest.raises(RateLimited, match=r"\(in (299|300) s\)"):
        check(403, {"ratelimit-remaining": "0", "ratelimit-reset": str(reset)})


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (401, RepoUnreachable, r"rejected the configured credentials \(HTTP 401\): nope"),
        (403, RepoUnreachable, r"refused the request \(HTTP 403\): nope"),
        (400, UpstreamError, r"^GitHub API answered HTTP 400: nope$"),
        (504, RepoUnreachable, "^GitHub API answered 504$"),
    ],
)
def test_other_statuses(status: int, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        check(status, {"x-ratelimit-remaining": "10"}, b'{"message": "nope\\u0000\\n"}')


@pytest.mark.parametrize("status", [200, 201, 304, 404, 409, 410, 422, 451])
def test_passed_to_the_caller(status: int) -> None:
    assert check(status, {}).status == status


def test_pick() -> None:
    data = {"history": [{"version": "abc"}], "public": True, "n": 1, "flag": True}
    assert pick(data, "history", 0, "version", kind=str, api="X") == "abc"
    assert pick(data, "public", kind=bool, api="X") is True
    assert pick(data, "n", kind=int, api="X") == 1
    for path in [("history", 1, "version"), ("history", "0"), ("missing",), ("public", "x")]:
        with pytest.raises(UpstreamError, match="X answered without a valid"):
            pick(data, *path, kind=str, api="X")
    with pytest.raises(UpstreamError, match="'flag'"):
        pick(data, "flag", kind=int, api="X")  # a bool is not an int here


async def test_answers_are_bounded(
    http: httpx.AsyncClient, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_api, "MAX_BODY", 500)
    fake_github.add_repo("org", "repo")
    api = HttpApi(http, name="GitHub API", base_url=fake_github.url, timeout=2)
    with pytest.raises(UpstreamError, match="sent more than"):
        await api.get("/repos/org/repo/commits/main")  # the full commit JSON is larger


async def test_lookup_cache_remembers_not_found_briefly() -> None:
    now = [1000.0]
    cache: LookupCache[str, str] = LookupCache(
        ttl=0, error_ttl=30, remember=(RepoNotFound, RefNotFound), clock=lambda: now[0]
    )
    calls = 0

    async def missing() -> str:
        nonlocal calls
        calls += 1
        raise RefNotFound(f"no such ref ({calls})")

    async def broken() -> str:
        nonlocal calls
        calls += 1
        raise UpstreamError("down")

    for _ in range(3):
        with pytest.raises(RefNotFound, match=r"\(1\)"):
            await cache.get_or_compute("k", missing)
    assert calls == 1
    now[0] += 30
    with pytest.raises(RefNotFound, match=r"\(2\)"):
        await cache.get_or_compute("k", missing)
    for _ in range(2):  # an outage is never remembered
        with pytest.raises(UpstreamError):
            await cache.get_or_compute("other", broken)
    assert calls == 4


def test_an_api_message_is_shown_without_credentials() -> None:
    body = b'{"message": "cannot fetch https://user:s3cret@mirror.example/x"}'
    with pytest.raises(UpstreamError, match=r"HTTP 400: cannot fetch https://mirror\.example/x$") as info:
        check(400, {}, body)
    assert "s3cret" not in str(info.value)


async def test_a_redirect_to_a_port_that_does_not_parse_is_refused(
    http: httpx.AsyncClient, fake_github: FakeGitHub
) -> None:
    fake_github.add_repo("org", "old")
    fake_github.rename_repo("org", "old", "org", "new")
    api = HttpApi(http, name="GitHub API", base_url=fake_github.url, timeout=2)
    fake_github.url = fake_github.url.rpartition(":")[0] + ":99999"  # the 301 points at no port at all
    with pytest.raises(RepoUnreachable, match="redirected to another host"):
        await api.get("/repos/org/old")
