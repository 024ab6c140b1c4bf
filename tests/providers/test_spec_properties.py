"""Property tests: no input crashes spec parsing or detection; only BinderError subclasses come out."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binder_service.errors import BinderError, InvalidSpec
from binder_service.providers import Providers, RepoSpec
from binder_service.providers.detect import url_path
from binder_service.providers.git.provider import check_ref
from binder_service.providers.http_api import HttpApi, Reply
from binder_service.providers.registry import make_providers as _providers
from binder_service.settings import Settings

# Never used for a request: parsing and detection do not touch the network.
_HTTP = httpx.AsyncClient(verify=ssl.create_default_context())
PROVIDERS: Providers = _providers(Settings(), _HTTP)
NAMES = [p.name for p in PROVIDERS]

# Text that looks like specs: segments of awkward characters joined by slashes.
_TRICKY = st.sampled_from(list("/%.-_~:@?#[]\\ \t\n\x00aZ09é")) | st.characters()
segments = st.lists(st.text(_TRICKY, max_size=12), max_size=6).map("/".join)
escaped = st.binary(max_size=40).map(lambda b: quote(b, safe=""))
spec_text = st.one_of(st.text(max_size=80), segments, escaped, st.tuples(escaped, escaped).map("/".join))
hosts = st.sampled_from(
    ["https://github.com/", "https://gitlab.com/", "https://gist.github.com/", "http://github.com/", ""]
)
repo_text = st.one_of(st.tuples(hosts, spec_text).map("".join), st.text(max_size=80))


def only_binder_errors(call: Callable[[], RepoSpec]) -> None:
    with contextlib.suppress(BinderError):
        call()


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=200, deadline=None)
@given(text=spec_text)
def test_parse_spec_never_crashes(name: str, text: str) -> None:
    provider = PROVIDERS.get(name)
    only_binder_errors(lambda: provider.parse_spec(text))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=200, deadline=None)
@given(repo=repo_text, ref=spec_text)
def test_from_repo_never_crashes(name: str, repo: str, ref: str) -> None:
    provider = PROVIDERS.get(name)
    only_binder_errors(lambda: provider.from_repo(repo, ref))


@settings(max_examples=500, deadline=None)
@given(repo=repo_text)
def test_detection_never_crashes(repo: str) -> None:
    assert PROVIDERS.for_repo(repo).name in NAMES
    url_path(repo, "https://github.com")


_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}", fullmatch=True)
_ref = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_./#%+-]{0,25}", fullmatch=True).filter(
    lambda r: _valid_ref(r) and not r.endswith(".git")
)


def _valid_ref(ref: str) -> bool:
    try:
        check_ref(ref)
    except InvalidSpec:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(org=_name, repo=_name, ref=_ref)
def test_github_spec_round_trip(org: str, repo: str, ref: str) -> None:
    gh = PROVIDERS.get("gh")
    expected = RepoSpec(provider="gh", repo=f"{org}/{repo}", ref=ref)
    assert gh.parse_spec(f"{org}/{repo}/{quote(ref, safe='')}") == expected
    assert gh.from_repo(f"https://github.com/{org}/{repo}", ref) == expected


@settings(max_examples=200, deadline=None)
@given(path=st.lists(_name, min_size=2, max_size=5).map("/".join), ref=_ref)
def test_gitlab_spec_round_trip(path: str, ref: str) -> None:
    gl = PROVIDERS.get("gl")
    expected = RepoSpec(provider="gl", repo=path, ref=ref)
    assert gl.parse_spec(f"{quote(path, safe='')}/{quote(ref, safe='')}") == expected
    assert gl.from_repo(f"https://gitlab.com/{path}", ref) == expected


_header_value = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    st.sampled_from(
        ["0", "nan", "inf", "-inf", "1e309", "-5", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT"]
    ),
    st.integers().map(str),
    st.floats().map(str),
)


@settings(max_examples=500, deadline=None)
@given(
    status=st.sampled_from([403, 429]),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
                "ratelimit-remaining",
                "ratelimit-reset",
                "retry-after",
            ]
        ),
        _header_value,
    ),
)
def test_rate_limit_headers_never_crash(status: int, headers: dict[str, str]) -> None:
    """Hostile or broken rate-limit headers give a RateLimited or a plain refusal, nothing else."""
    api = HttpApi(_HTTP, name="GitHub API", base_url="https://api.example", timeout=1)
    with contextlib.suppress(BinderError):
        api._check(Reply("GitHub API", status, httpx.Headers(headers), b"{}"))
