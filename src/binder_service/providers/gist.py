"""The `gist` provider: a GitHub gist at a revision. BinderHub spec: `<user>/<gist id>[/<revision>]`.

`GET /gists/{id}` lists every revision, newest first; a missing revision (or HEAD) means the newest.
Like `gh`, the answer is kept with its ETag and revalidated with a conditional request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import quote, unquote

from ..caching import AsyncCache
from ..errors import InvalidSpec, RefNotFound, RepoNotAllowed, RepoNotFound, UpstreamError
from .base import RepoSpec, ResolvedRepo
from .detect import url_path
from .git.provider import check_ref
from .git.urls import is_commit_id
from .github import check_name
from .hosted import HostedProvider
from .http_api import HttpApi, Reply, pick

if TYPE_CHECKING:
    from .registry import ProviderContext

__all__ = ["GistProvider"]

# A gist has one branch; BinderHub reads these as "the newest revision".
LATEST: Final = frozenset({"HEAD", "master", "main"})
_GIST_ID = re.compile(r"[0-9A-Za-z]{1,64}")


@dataclass(frozen=True, slots=True)
class GistInfo:
    public: bool
    versions: tuple[str, ...]  # commit ids, newest first


def check_gist_id(value: str) -> str:
    """A gist id (hex, or digits for old gists); InvalidSpec otherwise."""
    if not _GIST_ID.fullmatch(value):
        raise InvalidSpec(f"{value[:100]!r} is not a valid gist id")
    return value


def _info(reply: Reply) -> GistInfo:
    data: Any = reply.json()
    public = pick(data, "public", kind=bool, api=reply.api)
    history = pick(data, "history", kind=list, api=reply.api)
    versions = tuple(pick(h, "version", kind=str, api=reply.api).lower() for h in history)
    if not versions or not all(is_commit_id(v) for v in versions):
        raise UpstreamError(f"{reply.api} answered with a gist history without valid versions")
    return GistInfo(public=public, versions=versions)


class GistProvider(HostedProvider[str, GistInfo]):
    """GitHub gists; secret ones only when the operator allows them (as BinderHub does)."""

    default_web_url = "https://gist.github.com"
    remembered = (RepoNotFound,)

    name = "gist"
    display_name = "GitHub Gist"
    spec_example = "octocat/6cad326836d38bd3a7ae/HEAD"
    spec_regex = r"^(?P<user>[^/]+)/(?P<gist_id>[^/]+)(/(?P<ref>.*))?$"
    repo_label = "Gist URL or <user>/<gist id>"
    ref_label = "Gist revision (commit; default: the newest)"

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as the settings configure it (the providers' registry calls this)."""
        s = context.settings
        return cls(context.github, web_url=s.gist_url, allow_secret=s.allow_secret_gists, **context.options)

    def __init__(
        self,
        api: HttpApi,
        *,
        web_url: str | None = None,
        allow_secret: bool = False,
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
        self._allow_secret = allow_secret
        self._etags: AsyncCache[str, tuple[str, GistInfo]] = AsyncCache(ttl=float("inf"), max_size=max_cached)

    # --- specs ------------------------------------------------------------------------------------

    def parse_spec(self, spec: str) -> RepoSpec:
        self._check_length("spec", spec)
        parts = spec.split("/", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise InvalidSpec(f"a gist spec is <user>/<gist id>[/<revision>], e.g. {self.spec_example}")
        ref = unquote(parts[2]) if len(parts) == 3 and parts[2] else "HEAD"
        return self._spec(unquote(parts[0]), unquote(parts[1]), ref)

    def from_repo(self, repo: str, ref: str) -> RepoSpec:
        """`repo` is `<user>/<gist id>` or a URL: https://gist.github.com/[<user>/]<id>[.git][/<revision>]."""
        self._check_length("repository", repo)
        self._check_length("ref", ref)
        path = url_path(repo, self._web_url)
        parts = [unquote(p) for p in (path if path is not None else repo).split("/")]
        if path is not None and len(parts) == 1:
            parts = ["", *parts]  # https://gist.github.com/<id> names no user
        if len(parts) == 3 and parts[2]:
            if ref not in ("HEAD", parts[2]):  # "HEAD" is the native API's default: the URL's wins
                raise InvalidSpec(
                    f"the URL names revision {parts[2][:100]!r} but {ref[:100]!r} was asked for"
                )
            ref, parts = parts[2], parts[:2]
        if len(parts) != 2 or not parts[1]:
            raise InvalidSpec(f"a gist is <user>/<gist id> or {self._web_url}/<user>/<gist id>")
        return self._spec(parts[0], parts[1], ref)

    def _spec(self, user: str, gist_id: str, ref: str) -> RepoSpec:
        gist_id = check_gist_id(gist_id.removesuffix(".git"))
        if user:
            check_name("user", user)
        return RepoSpec(provider=self.name, repo=f"{user}/{gist_id}" if user else gist_id, ref=check_ref(ref))

    # --- resolving --------------------------------------------------------------------------------

    async def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        gist_id = spec.repo.rpartition("/")[2]
        info = await self._lookups.get_or_compute(gist_id.lower(), lambda: self._fetch(gist_id))
        if not info.public and not self._allow_secret:
            raise RepoNotAllowed(f"gist {gist_id} is secret, and secret gists are not enabled here")
        if spec.ref in LATEST:
            commit = info.versions[0]
        elif spec.ref.lower() in info.versions:
            commit = spec.ref.lower()
        else:
            raise RefNotFound(f"revision {spec.ref[:100]!r} not found in gist {gist_id}")
        return ResolvedRepo(
            provider=self.name,
            repo_url=f"{self._web_url}/{gist_id}.git",
            ref=spec.ref,
            commit=commit,
            build_slug=f"{self._host}/{gist_id}",
        )

    async def _fetch(self, gist_id: str) -> GistInfo:
        key = gist_id.lower()
        kept = self._etags.get(key)
        headers = {"If-None-Match": kept[0]} if kept is not None else None
        reply = await self._api.get(f"/gists/{quote(gist_id, safe='')}", headers=headers)
        if reply.status == 304:
            if kept is None:
                raise UpstreamError(f"{reply.api} answered 304 to a request that was not conditional")
            self._etags.put(key, kept)
            return kept[1]
        if reply.status in (404, 410, 451):
            self._etags.discard(key)
            raise RepoNotFound(f"gist {gist_id} not found")
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for a gist")
        info = _info(reply)
        if reply.etag:
            self._etags.put(key, (reply.etag, info))
        return info
