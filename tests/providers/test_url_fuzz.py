"""URL-shaped fuzzing: whatever urlsplit refuses (bad brackets, ports, hosts that change under NFKC)
comes out of check_git_url and every provider's parser as a BinderError, never a ValueError."""

from __future__ import annotations

import contextlib
import ssl
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binder_service.errors import BinderError, InvalidSpec
from binder_service.providers import Providers
from binder_service.providers.git.urls import check_git_url
from binder_service.providers.registry import make_providers as _providers
from binder_service.settings import Settings

_HTTP = httpx.AsyncClient(verify=ssl.create_default_context())  # never used: parsing is offline
PROVIDERS: Providers = _providers(Settings(), _HTTP)
NAMES = [p.name for p in PROVIDERS]
PROTOCOLS = frozenset({"http", "https", "git", "ssh"})

# The characters that upset urlsplit and its .hostname/.port: brackets, colons, @, and characters
# whose NFKC form holds a URL delimiter (U+2100 "a/c", U+FF03 fullwidth "#", U+FE6B small "@", ...).
_AWKWARD = st.sampled_from([*"[]:@/?#%-.0123456789azZ", "\u2100", "\uff03", "\ufe6b", "\u2488", "é"])
netloc = st.text(_AWKWARD | st.characters(codec="utf-8"), max_size=24)
schemes = st.sampled_from(["http://", "https://", "git://", "ssh://", "git+ssh://", "", "HTTP://"])
paths = st.sampled_from(["", "/x", "/org/repo", "/org/repo.git", "/org/repo/tree/main", ":x/y"])
urls = st.tuples(schemes, netloc, paths).map("".join)

KNOWN_BAD = [
    "git://[127.0.0.1:19418/x",
    "http://[zz]/x",
    "ssh://[-oProxyCommand=x]/x",
    "http://ex\u2100.com/x",
    "https://a\uff03b/x",
    "https://github.com\u2100/org/repo",
    "http://[::1]x/y",
    "git://host:99999/x",
    "git://host:-1/x",
    "https://[::1/org/repo",
]


def _check(url: str) -> str:
    return check_git_url(url, allowed_protocols=PROTOCOLS, allow_local=False, max_length=2048)


@pytest.mark.parametrize("url", KNOWN_BAD)
def test_urls_urlsplit_refuses_are_invalid_spec(url: str) -> None:
    with pytest.raises(InvalidSpec):
        _check(url)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("url", KNOWN_BAD)
def test_providers_refuse_them_with_binder_errors(name: str, url: str) -> None:
    provider = PROVIDERS.get(name)
    with contextlib.suppress(BinderError):
        provider.from_repo(url, "main")
    with contextlib.suppress(BinderError):
        provider.parse_spec(f"{quote(url, safe='')}/main")
    with contextlib.suppress(BinderError):
        PROVIDERS.for_repo(url)


@settings(max_examples=800, deadline=None)
@given(url=urls)
def test_check_git_url_raises_only_binder_errors(url: str) -> None:
    with contextlib.suppress(BinderError):
        _check(url)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(url=urls)
def test_provider_parsers_raise_only_binder_errors(name: str, url: str) -> None:
    provider = PROVIDERS.get(name)
    with contextlib.suppress(BinderError):
        provider.from_repo(url, "main")
    with contextlib.suppress(BinderError):
        provider.parse_spec(quote(url, safe="") + "/main")
    with contextlib.suppress(BinderError):
        provider.parse_spec(url)


@settings(max_examples=300, deadline=None)
@given(url=urls)
def test_detection_raises_only_binder_errors(url: str) -> None:
    with contextlib.suppress(BinderError):
        PROVIDERS.for_repo(url)
