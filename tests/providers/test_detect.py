"""Which provider a native API repository goes to, and the providers made from Settings."""

from __future__ import annotations

import re

import httpx
import pytest
from pydantic import ValidationError

from binder_service.errors import UnknownProvider
from binder_service.providers import Providers
from binder_service.providers.detect import url_path
from binder_service.providers.registry import make_providers as _providers
from binder_service.settings import Settings
from tests.support.fake_apis import FakeGitHub, FakeGitLab, sha_of


@pytest.mark.parametrize(
    ("repo", "base", "path"),
    [
        ("https://github.com/org/repo", "https://github.com", "org/repo"),
        ("http://github.com/org/repo/", "https://github.com", "org/repo"),
        ("https://GitHub.COM/org/repo", "https://github.com", "org/repo"),
        ("https://github.com/org/repo?x=1#y", "https://github.com", "org/repo"),
        ("https://github.com", "https://github.com", ""),
        ("https://example.com/gitlab/g/p", "https://example.com/gitlab", "g/p"),
        ("https://example.com/gitlabx/g/p", "https://example.com/gitlab", None),
        ("https://example.com:8443/g/p", "https://example.com:8443", "g/p"),
        ("https://example.com:8443/g/p", "https://example.com", None),
        ("https://user:tok@github.com/org/repo", "https://github.com", None),
        ("https://tok@github.com/org/repo", "https://github.com", None),
        ("https://github.com.evil.example/org/repo", "https://github.com", None),
        ("https://evilgithub.com/org/repo", "https://github.com", None),
        ("git@github.com:org/repo.git", "https://github.com", None),
        ("ssh://git@github.com/org/repo", "https://github.com", None),
        ("https://github.com:notaport/org", "https://github.com", None),
        ("org/repo", "https://github.com", None),
        ("", "https://github.com", None),
    ],
)
def test_url_path(repo: str, base: str, path: str | None) -> None:
    assert url_path(repo, base) == path


@pytest.fixture
async def providers(http: httpx.AsyncClient) -> Providers:
    return _providers(Settings(), http)


@pytest.mark.parametrize(
    ("repo", "provider"),
    [
        ("https://github.com/org/repo", "gh"),
        ("https://github.com/org/repo.git", "gh"),
        ("https://github.com/org/repo/tree/feature/x", "gh"),
        ("http://www.github.com/org/repo", "git"),  # not the configured host
        ("https://user:token@github.com/org/private", "git"),  # credentials stay with git
        ("git@github.com:org/repo.git", "git"),
        ("https://gitlab.com/group/sub/project", "gl"),
        ("https://gitlab.com/group/project/-/tree/main", "gl"),
        ("https://gist.github.com/octocat/6cad326836d38bd3a7ae", "gist"),
        ("https://gist.github.com/6cad326836d38bd3a7ae", "gist"),
        ("https://bitbucket.org/org/repo", "git"),
        ("https://example.com/repo.git", "git"),
        ("git://example.com/repo.git", "git"),
        ("org/repo", "git"),
    ],
)
def test_detection(providers: Providers, repo: str, provider: str) -> None:
    assert providers.for_repo(repo).name == provider


def test_detection_order_and_explicit_choice(providers: Providers) -> None:
    assert [p.name for p in providers] == [
        "gh", "gl", "gist", "zenodo", "figshare", "hydroshare", "dataverse", "ckan", "git"
    ]  # fmt: skip
    assert providers.for_repo("https://github.com/org/repo", "git").name == "git"
    assert providers.for_repo("org/repo", "gh").name == "gh"
    with pytest.raises(UnknownProvider):
        providers.for_repo("org/repo", "nosuch")


async def test_enterprise_hosts_and_disabled_providers(http: httpx.AsyncClient) -> None:
    ghe = _providers(
        Settings(
            github_url="https://ghe.example.com/",
            github_api_url="https://ghe.example.com/api/v3",
            gitlab_url="https://code.example.org/gitlab",
        ),
        http,
    )
    assert ghe.for_repo("https://ghe.example.com/org/repo").name == "gh"
    assert ghe.for_repo("https://github.com/org/repo").name == "git"
    assert ghe.for_repo("https://code.example.org/gitlab/g/p").name == "gl"
    assert ghe.for_repo("https://code.example.org/other/g/p").name == "git"

    only_git = _providers(Settings(providers="git"), http)
    assert only_git.for_repo("https://github.com/org/repo").name == "git"
    with pytest.raises(UnknownProvider, match="unknown provider 'gh' \\(enabled: git\\)"):
        only_git.get("gh")

    no_git = _providers(Settings(providers=["gh", "gl"]), http)
    assert no_git.for_repo("https://gitlab.com/g/p").name == "gl"
    with pytest.raises(UnknownProvider, match=r"no enabled provider handles 'https://example\.com/x'"):
        no_git.for_repo("https://example.com/x")


async def test_settings_drive_the_providers_end_to_end(
    http: httpx.AsyncClient, fake_github: FakeGitHub, fake_gitlab: FakeGitLab
) -> None:
    """The real wiring: Settings -> app._providers -> detection -> parse -> resolve against the fakes."""
    fake_github.tokens.add("gh-token")
    fake_gitlab.tokens.add("gl-token")
    fake_github.add_repo("org", "repo", branches={"main": sha_of("gh")})
    fake_github.add_gist("abc123", owner="octocat", versions=[sha_of("gist")])
    fake_gitlab.add_project("group/project", branches={"main": sha_of("gl")})
    settings = Settings(
        github_api_url=fake_github.url,
        github_token="gh-token",
        gitlab_url=fake_gitlab.url,
        gitlab_token="gl-token",
        resolve_timeout=2.0,
    )
    providers = _providers(settings, http)
    cases = [
        ("https://github.com/org/repo/tree/main", "gh", sha_of("gh")),
        (f"{fake_gitlab.url}/group/project", "gl", sha_of("gl")),
        ("https://gist.github.com/octocat/abc123", "gist", sha_of("gist")),
    ]
    for repo, name, commit in cases:
        provider = providers.for_repo(repo)
        assert provider.name == name
        resolved = await provider.resolve(provider.from_repo(repo, "HEAD"))
        assert resolved.commit == commit
    assert {s.headers["authorization"] for s in fake_github.seen} == {"Bearer gh-token"}
    assert {s.headers["private-token"] for s in fake_gitlab.seen} == {"gl-token"}
    # BinderHub's form reaches the same providers.
    resolved = await providers.get("gh").resolve(providers.get("gh").parse_spec("org/repo/main"))
    assert resolved.commit == sha_of("gh")


def test_metadata(providers: Providers) -> None:
    for provider in providers:
        meta = provider.metadata()
        assert meta["id"] == provider.name
        assert meta["display_name"]
        assert re.fullmatch(meta["spec"]["regex"], meta["spec"]["example"]), provider.name
        provider.parse_spec(meta["spec"]["example"])  # the example is a valid spec
    assert {p.name: p.display_name for p in providers} == {
        "gh": "GitHub",
        "gl": "GitLab",
        "gist": "GitHub Gist",
        "zenodo": "Zenodo DOI",
        "figshare": "Figshare DOI",
        "hydroshare": "HydroShare resource",
        "dataverse": "Dataverse DOI",
        "ckan": "CKAN dataset",
        "git": "Git repository",
    }


# --- settings -------------------------------------------------------------------------------------


def test_provider_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINDER_SERVICE_PROVIDERS", "gh, git gh")
    monkeypatch.setenv("BINDER_SERVICE_GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("BINDER_SERVICE_GITLAB_URL", "https://gitlab.example.org/")
    s = Settings()
    assert s.providers == ["gh", "git"]
    assert s.github_token is not None
    assert s.github_token.get_secret_value() == "ghp_secret"
    assert "ghp_secret" not in repr(s)
    assert "ghp_secret" not in str(s.model_dump())
    assert s.gitlab_url == "https://gitlab.example.org"


def test_provider_defaults() -> None:
    s = Settings()
    assert s.providers == ["gh", "gl", "gist", "zenodo", "figshare", "hydroshare", "dataverse", "ckan", "git"]
    assert (s.github_url, s.github_api_url, s.gitlab_url) == (
        "https://github.com",
        "https://api.github.com",
        "https://gitlab.com",
    )
    assert s.github_token is None
    assert s.gitlab_token is None
    assert s.not_found_cache_ttl == 30.0


@pytest.mark.parametrize(
    "bad",
    [
        {"providers": "gh,nosuch"},
        {"providers": ""},
        {"github_api_url": "api.github.com"},
        {"gitlab_url": "https://user:pw@gitlab.com"},
        {"not_found_cache_ttl": -1},
    ],
)
def test_bad_provider_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]
