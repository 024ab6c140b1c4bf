"""The `gh` provider: a GitHub repository, resolved through the REST API. Spec: `<org>/<repo>/<ref>`.

A ref is pinned with `GET /repos/{org}/{repo}/commits/{ref}` asking for the bare sha. Each answer's ETag
is kept, and the next lookup of that ref is a conditional request: an unchanged ref answers 304 and we
reuse the sha we kept. GitHub does not count such 304s against the rate limit when the request is
authorised (a token is configured); without one they save only the body.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import quote, unquote

import httpx
from pydantic import SecretStr

from ..caching import AsyncCache
from ..errors import InvalidSpec, RefNotFound, RepoNotFound, UpstreamError
from .base import RepoSpec, ResolvedRepo
from .detect import url_path
from .git.provider import check_ref
from .git.urls import is_commit_id
from .hosted import HostedProvider
from .http_api import HttpApi, QuotaObserver, Reply, pick

if TYPE_CHECKING:
    from .registry import ProviderContext

__all__ = ["GitHubProvider", "github_api"]

SHA_MEDIA_TYPE: Final = "application/vnd.github.sha"
JSON_MEDIA_TYPE: Final = "application/vnd.github+json"
API_VERSION: Final = "2022-11-28"
FALLBACK_REFS: Final = frozenset({"master", "main"})

# GitHub logins and repository names (Enterprise adds "_" and "." to logins); "." and ".." never.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def github_api(
    http: httpx.AsyncClient,
    *,
    api_url: str,
    token: SecretStr | None,
    timeout: float,
    observe_quota: QuotaObserver | None = None,
) -> HttpApi:
    """The GitHub REST API client `gh` and `gist` share (one rate limit, one token)."""
    headers = {"Accept": JSON_MEDIA_TYPE, "X-GitHub-Api-Version": API_VERSION}
    if token is not None and token.get_secret_value():
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    return HttpApi(
        http,
        name="GitHub API",
        base_url=api_url,
        timeout=timeout,
        headers=headers,
        observe_quota=observe_quota,
    )


def check_name(what: str, value: str) -> str:
    """A GitHub login or repository name; InvalidSpec otherwise."""
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise InvalidSpec(f"{value[:100]!r} is not a valid GitHub {what}")
    return value


def _sha(reply: Reply) -> str:
    """The commit id in a commits answer: the bare sha we asked for, or JSON's `sha` if that was ignored."""
    if reply.is_json:
        sha = pick(reply.json(), "sha", kind=str, api=reply.api)
    else:
        sha = reply.body.decode("ascii", "replace").strip()
    if not is_commit_id(sha):
        raise UpstreamError(f"{reply.api} answered with {sha[:60]!r} instead of a commit id")
    return sha.lower()


class GitHubProvider(HostedProvider[tuple[str, str, str], tuple[str, str, str | None]]):
    """Repositories on GitHub (or a GitHub Enterprise server)."""

    default_web_url = "https://github.com"

    name = "gh"
    display_name = "GitHub"
    spec_example = "binder-examples/requirements/HEAD"
    spec_regex = r"^(?P<org>[^/]+)/(?P<repo>[^/]+)/(?P<ref>.+)$"
    repo_label = "GitHub repository name or URL"

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as the settings configure it (the providers' registry calls this)."""
        s = context.settings
        return cls(context.github, web_url=s.github_url, **context.options)

    def __init__(
        self,
        api: HttpApi,
        *,
        web_url: str | None = None,
        max_input_length: int,
        ref_cache_ttl: float = 0.0,
        not_found_ttl: float = 30.0,
        max_cached: int = 4096,
    ) -> None:
        super().__init__(
            api,
            web_url=web_url,
            max_input_length=max_input_length,
            ref_cache_ttl=ref_cache_ttl,
            not_found_ttl=not_found_ttl,
            max_cached=max_cached,
        )
        # (org, repo, ref) -> (ETag, sha) of the last answer, for conditional requests.
        self._etags: AsyncCache[tuple[str, str, str], tuple[str, str]] = AsyncCache(
            ttl=float("inf"), max_size=max_cached
        )

    # --- specs ------------------------------------------------------------------------------------

    def parse_spec(self, spec: str) -> RepoSpec:
        self._check_length("spec", spec)
        parts = spec.split("/", 2)  # the ref is everything after the second slash
        if len(parts) != 3 or not all(parts):
            hint = f" Did you mean {spec.rstrip('/') + '/HEAD'!r}?" if len(parts) == 2 and all(parts) else ""
            raise InvalidSpec(f"a GitHub spec is <org>/<repo>/<ref>, e.g. {self.spec_example}.{hint}")
        org, repo, ref = (unquote(p) for p in parts)
        return self._spec(org, repo, ref)

    def from_repo(self, repo: str, ref: str) -> RepoSpec:
        """`repo` is `org/repo` or a URL: https://github.com/org/repo[.git][/tree/<ref>]."""
        self._check_length("repository", repo)
        self._check_length("ref", ref)
        path = url_path(repo, self._web_url)
        segments = (path if path is not None else repo).split("/")
        if len(segments) >= 4 and segments[2] == "tree" and all(segments[3:]):
            in_url = unquote("/".join(segments[3:]))
            if ref not in ("HEAD", in_url):  # "HEAD" is the native API's default: the URL's ref wins
                raise InvalidSpec(f"the URL names ref {in_url[:100]!r} but ref {ref[:100]!r} was asked for")
            ref, segments = in_url, segments[:2]
        if len(segments) != 2 or not all(segments):
            raise InvalidSpec(
                f"a GitHub repository is <org>/<repo> or {self._web_url}/<org>/<repo>[/tree/<ref>]"
            )
        return self._spec(unquote(segments[0]), unquote(segments[1]), ref)

    def _spec(self, org: str, repo: str, ref: str) -> RepoSpec:
        repo = repo.removesuffix(".git")  # as BinderHub does: people paste clone URLs
        check_name("user or organisation", org)
        check_name("repository name", repo)
        return RepoSpec(provider=self.name, repo=f"{org}/{repo}", ref=check_ref(ref))

    # --- resolving --------------------------------------------------------------------------------

    async def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        org, _, repo = spec.repo.partition("/")
        if is_commit_id(spec.ref):
            ref, commit, note = spec.ref, spec.ref.lower(), None  # immutable already: no round trip
        else:
            # GitHub names are case-insensitive: Org/Repo and org/repo share one lookup.
            key = (org.lower(), repo.lower(), spec.ref)
            ref, commit, note = await self._lookups.get_or_compute(
                key, lambda: self._lookup(org, repo, spec.ref)
            )
        return ResolvedRepo(
            provider=self.name,
            repo_url=f"{self._web_url}/{org}/{repo}",
            ref=ref,
            commit=commit,
            # GitHub names are case-insensitive: Org/Repo and org/repo are one repository, so one image.
            build_slug=f"{self._host}/{org.lower()}/{repo.lower()}",
            note=note,
        )

    async def _lookup(self, org: str, repo: str, ref: str) -> tuple[str, str, str | None]:
        """(ref used, commit, note); the repository is only looked at when the ref is not found."""
        commit = await self._commit(org, repo, ref)
        if commit is not None:
            return ref, commit, None
        default = await self._default_branch(org, repo)  # RepoNotFound if the repository is missing
        if ref in FALLBACK_REFS and default != ref:
            # master -> main renames break old links; the default branch is what they meant.
            commit = await self._commit(org, repo, default)
            if commit is not None:
                note = f"branch {ref!r} does not exist; using the default branch {default!r}"
                return default, commit, note
        raise RefNotFound(f"ref {ref[:200]!r} not found in GitHub repository {org}/{repo}")

    async def _commit(self, org: str, repo: str, ref: str) -> str | None:
        """The commit `ref` names, None if GitHub knows no such commit (or no such repository)."""
        key = (org.lower(), repo.lower(), ref)
        kept = self._etags.get(key)
        headers = {"Accept": SHA_MEDIA_TYPE}
        if kept is not None:
            headers["If-None-Match"] = kept[0]
        path = f"/repos/{quote(org, safe='')}/{quote(repo, safe='')}/commits/{quote(ref, safe='')}"
        reply = await self._api.get(path, headers=headers)
        if reply.status == 304:
            if kept is None:
                raise UpstreamError(f"{reply.api} answered 304 to a request that was not conditional")
            self._etags.put(key, kept)  # most recently used again
            return kept[1]
        if reply.status in (404, 410, 422, 451):  # 422 is "No commit found for SHA"; the rest: no repo
            self._etags.discard(key)
            return None
        if reply.status == 409:
            raise RefNotFound(f"GitHub repository {org}/{repo} is empty")
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for a commit")
        sha = _sha(reply)
        if reply.etag:
            self._etags.put(key, (reply.etag, sha))
        return sha

    async def _default_branch(self, org: str, repo: str) -> str:
        reply = await self._api.get(f"/repos/{quote(org, safe='')}/{quote(repo, safe='')}")
        if reply.status == 404:
            raise RepoNotFound(f"GitHub repository {org}/{repo} not found (or not public)")
        if reply.status in (410, 451):  # deleted, or blocked (e.g. a DMCA takedown)
            why = reply.message() or f"HTTP {reply.status}"
            raise RepoNotFound(f"GitHub repository {org}/{repo} is unavailable: {why}")
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for a repository")
        default = pick(reply.json(), "default_branch", kind=str, api=reply.api)
        if not default:
            raise UpstreamError(f"{reply.api} answered with an empty default branch")
        return default
