"""The `gl` provider: a GitLab project (nested groups allowed), resolved through the REST API (v4).

BinderHub spec: `<URL-escaped namespace/project>/<ref>`, e.g. `group%2Fsubgroup%2Fproject/main`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import quote, unquote

import httpx
from pydantic import SecretStr

from ..errors import InvalidSpec, RefNotFound, RepoNotFound, UpstreamError
from .base import RepoSpec, ResolvedRepo
from .detect import url_path
from .git.provider import check_ref
from .git.urls import is_commit_id
from .github import FALLBACK_REFS
from .hosted import HostedProvider
from .http_api import HttpApi, QuotaObserver, pick

if TYPE_CHECKING:
    from .registry import ProviderContext

__all__ = ["GitLabProvider", "gitlab_api"]

# One group or project path component; GitLab allows letters, digits, "_", "-", "." and "+" (groups).
_COMPONENT = re.compile(r"[A-Za-z0-9_.+-]{1,255}")
MAX_DEPTH: Final = 21  # GitLab's subgroup nesting limit (20) plus the project


def gitlab_api(
    http: httpx.AsyncClient,
    *,
    url: str,
    token: SecretStr | None,
    timeout: float,
    observe_quota: QuotaObserver | None = None,
) -> HttpApi:
    """The v4 REST API of the GitLab instance at `url`."""
    headers = {"Accept": "application/json"}
    if token is not None and token.get_secret_value():
        headers["PRIVATE-TOKEN"] = token.get_secret_value()
    return HttpApi(
        http,
        name="GitLab API",
        base_url=url.rstrip("/") + "/api/v4",
        timeout=timeout,
        headers=headers,
        observe_quota=observe_quota,
    )


def check_namespace(path: str) -> str:
    """`group[/subgroup...]/project` with valid components; InvalidSpec otherwise."""
    parts = path.split("/")
    if len(parts) < 2 or len(parts) > MAX_DEPTH:
        raise InvalidSpec(f"{path[:100]!r} is not a GitLab project path (<group>[/<subgroup>...]/<project>)")
    for part in parts:
        if not _COMPONENT.fullmatch(part) or part in (".", ".."):
            raise InvalidSpec(f"{path[:100]!r} is not a valid GitLab project path")
    return path


class GitLabProvider(HostedProvider[tuple[str, str], tuple[str, str, str | None]]):
    """Projects on gitlab.com or a self-hosted GitLab."""

    default_web_url = "https://gitlab.com"

    name = "gl"
    display_name = "GitLab"
    spec_example = "gitlab-org%2Fgitlab-foss/HEAD"
    spec_regex = r"^(?P<repo>[^/]+)/(?P<ref>.+)$"
    repo_label = "GitLab project path or URL"

    # --- specs ------------------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as the settings configure it (the providers' registry calls this)."""
        s = context.settings
        api = gitlab_api(
            context.http,
            url=s.gitlab_url,
            token=s.gitlab_token,
            timeout=s.resolve_timeout,
            observe_quota=context.observe_quota,
        )
        return cls(api, web_url=s.gitlab_url, **context.options)

    def parse_spec(self, spec: str) -> RepoSpec:
        self._check_length("spec", spec)
        quoted, sep, ref = spec.partition("/")
        if not sep or not quoted or not ref:
            raise InvalidSpec(
                "a GitLab spec is <URL-escaped namespace/project>/<ref>, e.g. " + self.spec_example
            )
        return self._spec(unquote(quoted), unquote(ref))

    def from_repo(self, repo: str, ref: str) -> RepoSpec:
        """`repo` is `group/.../project` or a URL: https://gitlab.com/group/.../project[.git][/-/tree/<ref>]."""
        self._check_length("repository", repo)
        self._check_length("ref", ref)
        path = url_path(repo, self._web_url)
        project, sep, rest = (path if path is not None else repo).partition("/-/")
        if sep:  # GitLab puts its own pages after "/-/"; only a tree names a ref
            kind, _, in_url = rest.partition("/")
            if kind != "tree" or not in_url:
                raise InvalidSpec(
                    f"a GitLab project URL is {self._web_url}/<namespace>/<project>[/-/tree/<ref>]"
                )
            in_url = unquote(in_url)
            if ref not in ("HEAD", in_url):  # "HEAD" is the native API's default: the URL's ref wins
                raise InvalidSpec(f"the URL names ref {in_url[:100]!r} but ref {ref[:100]!r} was asked for")
            ref = in_url
        return self._spec("/".join(unquote(p) for p in project.split("/")), ref)

    def _spec(self, project: str, ref: str) -> RepoSpec:
        project = check_namespace(project.removesuffix(".git"))
        return RepoSpec(provider=self.name, repo=project, ref=check_ref(ref))

    # --- resolving --------------------------------------------------------------------------------

    async def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        if is_commit_id(spec.ref):
            ref, commit, note = spec.ref, spec.ref.lower(), None
        else:
            ref, commit, note = await self._lookups.get_or_compute(
                (spec.repo.lower(), spec.ref), lambda: self._lookup(spec.repo, spec.ref)
            )
        return ResolvedRepo(
            provider=self.name,
            repo_url=f"{self._web_url}/{spec.repo}.git",
            ref=ref,
            commit=commit,
            build_slug=f"{self._host}/{spec.repo}",
            note=note,
        )

    async def _lookup(self, project: str, ref: str) -> tuple[str, str, str | None]:
        """(ref used, commit, note); the project is only looked at when the ref is not found."""
        commit = await self._commit(project, ref)
        if commit is not None:
            return ref, commit, None
        default = await self._default_branch(project)
        if ref in FALLBACK_REFS and default and default != ref:
            commit = await self._commit(project, default)
            if commit is not None:
                return default, commit, f"branch {ref!r} does not exist; using the default branch {default!r}"
        raise RefNotFound(f"ref {ref[:200]!r} not found in GitLab project {project}")

    async def _commit(self, project: str, ref: str) -> str | None:
        path = f"/projects/{quote(project, safe='')}/repository/commits/{quote(ref, safe='')}"
        reply = await self._api.get(path)
        if reply.status in (404, 410):  # "404 Commit Not Found" or "404 Project Not Found"
            return None
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for a commit")
        sha = pick(reply.json(), "id", kind=str, api=reply.api)
        if not is_commit_id(sha):
            raise UpstreamError(f"{reply.api} answered with {sha[:60]!r} instead of a commit id")
        return sha.lower()

    async def _default_branch(self, project: str) -> str | None:
        reply = await self._api.get(f"/projects/{quote(project, safe='')}")
        if reply.status in (404, 410):
            raise RepoNotFound(f"GitLab project {project} not found (or not public)")
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for a project")
        data = reply.json()
        if not isinstance(data, dict):
            raise UpstreamError(f"{reply.api} answered with something that is not a project")
        branch = data.get("default_branch")  # null for a project without a repository
        return branch if isinstance(branch, str) else None
