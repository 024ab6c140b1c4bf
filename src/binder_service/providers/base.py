"""The provider interface: a repository source turns a spec into an immutable, buildable thing."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from ..errors import InputTooLarge, InvalidSpec

if TYPE_CHECKING:
    from .registry import ProviderContext


@dataclass(frozen=True, slots=True)
class RepoSpec:
    """What a request asks for, before anything is looked up."""

    provider: str
    repo: str  # as the user named it: a URL, "org/repo", a DOI, ...
    ref: str


@dataclass(frozen=True, slots=True)
class ResolvedRepo:
    """A spec pinned to an immutable version, with what repo2docker needs to fetch it."""

    provider: str
    repo_url: str  # what repo2docker fetches
    ref: str  # as asked
    commit: str  # immutable version: a commit id, a record version, ...
    build_slug: str  # stable identity of the repository, for the image name
    content_provider: str = "Git"  # repo2docker content provider class that fetches `repo_url`
    note: str | None = None  # something the requester should know, e.g. that another branch was used


class RepoProvider(ABC):
    """One repository source (`gh`, `gl`, `gist`, `git`, later `zenodo`, ...).

    `parse_spec` reads BinderHub's `/build/<provider>/<spec>` form; `from_repo` reads the native API's
    plain repository + ref; `resolve` pins the ref. Implementations raise only `BinderError`s.
    """

    name: ClassVar[str]
    display_name: ClassVar[str]
    spec_example: ClassVar[str]
    spec_regex: ClassVar[str]
    repo_label: ClassVar[str] = "Repository URL"
    ref_label: ClassVar[str] = "Git ref (branch, tag or commit)"

    def __init__(self, *, max_input_length: int) -> None:
        self.max_input_length = max_input_length

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as `context.settings` configure it (`providers.registry.PROVIDERS` calls it)."""
        raise NotImplementedError(f"{cls.__name__} cannot be made from settings")

    def claims(self, repo: str) -> bool:
        """True if `repo` (a native API repository) is this provider's, e.g. a URL on its host."""
        return False

    @abstractmethod
    def parse_spec(self, spec: str) -> RepoSpec:
        """BinderHub's spec string -> a RepoSpec; InvalidSpec when it does not parse."""

    @abstractmethod
    def from_repo(self, repo: str, ref: str) -> RepoSpec:
        """A repository (URL or provider-specific name) and a ref -> a RepoSpec."""

    @abstractmethod
    async def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        """Pin the spec's ref to an immutable version."""

    def metadata(self) -> dict[str, Any]:
        """What `/api/repoproviders` shows about this provider."""
        return {
            "id": self.name,
            "display_name": self.display_name,
            "spec": {"example": self.spec_example, "regex": self.spec_regex},
            "repo": {"label": self.repo_label},
            "ref": {"label": self.ref_label},
        }

    def _check_length(self, what: str, value: str) -> None:
        if len(value) > self.max_input_length:
            raise InputTooLarge(f"{what} is longer than {self.max_input_length} characters")
        if not value:
            raise InvalidSpec(f"{what} is empty")
