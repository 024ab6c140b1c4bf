"""The `git` provider: any git repository by URL. BinderHub spec: `<url-escaped URL>/<ref>`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Self
from urllib.parse import unquote

from ...caching import AsyncCache
from ...errors import InvalidSpec
from ...security.redaction import redact_url
from ..base import RepoProvider, RepoSpec, ResolvedRepo
from .remote import GitRemote
from .urls import check_git_url, is_commit_id

if TYPE_CHECKING:
    from ..registry import ProviderContext

# git check-ref-format's rules, plus "no leading dash" so a ref can never read as an option.
_BAD_REF = re.compile(r"(^[-/.])|(\.\.)|(@\{)|([\x00-\x20\x7f~^:?*\[\\])|(\.lock$)|(/$)|(\.$)|(//)")
# The same rules as one pattern a ref must match, for the OpenAPI schema (ECMA-262 and Python's `re` read
# it alike; in Python, use it with `fullmatch`): tests/providers/test_git_refs.py holds the two together.
REF_PATTERN = r"^(?![-/.])(?!.*(?:\.\.|@\{|//))(?!.*(?:\.lock|[/.])$)[^\x00-\x20\x7f~^:?*\[\\]+$"


def check_ref(ref: str) -> str:
    """A ref that git would accept and that cannot be mistaken for an option; InvalidSpec otherwise."""
    if ref != "HEAD" and _BAD_REF.search(ref):
        raise InvalidSpec(f"{ref[:100]!r} is not a valid git ref")
    return ref


class GitProvider(RepoProvider):
    """Any git repository reachable over the allowed protocols."""

    name = "git"
    display_name = "Git repository"
    spec_example = "https%3A%2F%2Fgithub.com%2Fbinder-examples%2Frequirements/HEAD"
    spec_regex = r"^(?P<repo>[^/]+)/(?P<ref>.+)$"

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as the settings configure it (the providers' registry calls this)."""
        s = context.settings
        protocols = frozenset(s.allowed_git_protocols)
        remote = GitRemote(
            context.http,
            timeout=s.resolve_timeout,
            allowed_protocols=protocols,
            allow_local=s.allow_local_repos,
            max_url_length=s.max_input_length,
            egress=context.egress,
            credentials=context.credentials,
            environ=context.environ,
        )
        return cls(
            remote,
            allowed_protocols=protocols,
            allow_local=s.allow_local_repos,
            max_input_length=s.max_input_length,
            ref_cache_ttl=s.ref_cache_ttl,
        )

    def __init__(
        self,
        remote: GitRemote,
        *,
        allowed_protocols: frozenset[str],
        allow_local: bool,
        max_input_length: int,
        ref_cache_ttl: float = 0.0,
    ) -> None:
        super().__init__(max_input_length=max_input_length)
        self._remote = remote
        self._allowed = allowed_protocols
        self._allow_local = allow_local
        self._refs: AsyncCache[tuple[str, str], str] = AsyncCache(ttl=ref_cache_ttl)

    def parse_spec(self, spec: str) -> RepoSpec:
        self._check_length("spec", spec)
        quoted, sep, ref = spec.partition("/")
        if not sep or not quoted or not ref:
            raise InvalidSpec("a git spec is <URL-escaped repository URL>/<ref>, e.g. " + self.spec_example)
        return self.from_repo(unquote(quoted), unquote(ref))

    def from_repo(self, repo: str, ref: str) -> RepoSpec:
        self._check_length("repository", repo)
        self._check_length("ref", ref)
        url = check_git_url(
            repo,
            allowed_protocols=self._allowed,
            allow_local=self._allow_local,
            max_length=self.max_input_length,
        )
        return RepoSpec(provider=self.name, repo=url, ref=check_ref(ref))

    async def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        if is_commit_id(spec.ref):
            commit = spec.ref.lower()  # immutable already: no round trip
        else:
            # Concurrent requests for one branch share one lookup; a TTL > 0 also reuses it briefly.
            commit = await self._refs.get_or_compute(
                (spec.repo, spec.ref), lambda: self._remote.resolve(spec.repo, spec.ref)
            )
        return ResolvedRepo(
            provider=self.name,
            repo_url=spec.repo,
            ref=spec.ref,
            commit=commit,
            build_slug=redact_url(spec.repo),
        )
