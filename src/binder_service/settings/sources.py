"""Settings of where repositories come from: resolution, providers, egress and the spec policy."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    BaseModel,
    Field,
    InstanceOf,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import NoDecode

from ..policy import SpecRule, compile_patterns, parse_spec_config
from ..provider_order import PROVIDER_ORDER
from .values import OBJECTS, STRINGS, IPNetwork, Words, split_policy_list


class SourceSettings(BaseModel):
    """Settings of where repositories come from: resolution, providers, egress and the spec policy."""

    # --- resolution ---
    allowed_git_protocols: Words = Field(
        default_factory=lambda: ["http", "https", "git", "ssh"],
        description="URL schemes a git repository may use.",
    )
    allow_local_repos: bool = Field(False, description="Allow `file:` URLs and local paths (tests, demos).")
    max_input_length: int = Field(2048, ge=64, description="Longest spec, URL or ref accepted.")
    ref_cache_ttl: float = Field(
        0.0, ge=0, description="Seconds a resolved branch/tag is reused; 0: always ask the repository."
    )
    image_cache_ttl: float = Field(
        600.0, ge=0, description="Seconds an image found in the registry is remembered as existing."
    )

    not_found_cache_ttl: float = Field(
        30.0, ge=0, description="Seconds a repository or ref that a host's API did not find is remembered."
    )

    # --- repository providers ---
    providers: Words = Field(
        default_factory=lambda: list(PROVIDER_ORDER),
        description="Enabled repository providers, in the order URL detection tries them: "
        "`gh` (GitHub), `gl` (GitLab), `gist` (GitHub gists), `zenodo`, `figshare`, `hydroshare`, "
        "`dataverse`, `ckan` (datasets, docs/providers.md), `git` (any git URL).",
    )
    github_url: str = Field("https://github.com", description="GitHub's web address (Enterprise: yours).")
    github_api_url: str = Field(
        "https://api.github.com",
        description="GitHub's REST API (Enterprise: `https://<host>/api/v3`); used by `gh` and `gist`.",
    )
    github_token: SecretStr | None = Field(
        None,
        description="Token sent to the GitHub API as a bearer token: a higher rate limit, private repos.",
    )
    gist_url: str = Field("https://gist.github.com", description="Where gists are cloned from.")
    allow_secret_gists: bool = Field(False, description="Build secret (unlisted) gists too.")
    gitlab_url: str = Field("https://gitlab.com", description="The GitLab instance `gl` resolves through.")
    gitlab_token: SecretStr | None = Field(
        None, description="Token sent to the GitLab API as `PRIVATE-TOKEN`: private projects."
    )
    git_credentials: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Credentials for private git repositories, one per host as git's credential store "
        "writes them: `https://user:token@host[:port]` (JSON list, or separated by spaces). Used to resolve "
        "refs over HTTP(S) and given to repo2docker's git in a private credential file. `github_token` and "
        "`gitlab_token` are added for their hosts.",
    )

    # --- dataset providers ---
    doi_resolver_url: str = Field(
        "https://doi.org", description="DOI resolver the dataset providers follow DOIs through (hop by hop)."
    )
    doi_cache_ttl: float = Field(
        3600.0, ge=0, description="Seconds the URL a DOI is registered to is remembered."
    )
    zenodo_urls: Words = Field(
        default_factory=lambda: ["https://zenodo.org", "https://sandbox.zenodo.org"],
        description="Zenodo (InvenioRDM) sites `zenodo` resolves records on; the API is `<site>/api`.",
    )
    zenodo_doi_prefixes: Words = Field(
        default_factory=lambda: ["10.5281"],
        description="DOI prefixes the native API hands to `zenodo` without being told the provider.",
    )
    figshare_url: str = Field("https://figshare.com", description="Figshare's web address (`figshare`).")
    figshare_api_url: str = Field("https://api.figshare.com/v2", description="Figshare's public API v2.")
    hydroshare_url: str = Field(
        "https://www.hydroshare.org", description="HydroShare's web address; its API is `<url>/hsapi`."
    )
    dataverse_installations: Words = Field(
        default_factory=lambda: ["https://dataverse.harvard.edu"],
        description="Dataverse installations `dataverse` resolves datasets on (and repo2docker may fetch "
        "from), as URLs.",
    )
    dataverse_doi_prefixes: Words = Field(
        default_factory=lambda: ["10.7910"],
        description="DOI prefixes the native API hands to `dataverse` without being told the provider.",
    )
    ckan_hosts: Words = Field(
        default_factory=list,
        description="Hosts (`host` or `host:port`) `ckan` may resolve datasets on; empty: any host "
        "(egress rules still apply). The native API detects CKAN URLs only on these hosts.",
    )

    # --- egress and spec policy (docs/security.md) ---
    allow_private_networks: bool = Field(
        False,
        description="Let repository URLs reach loopback, private, link-local and other non-public "
        "addresses (tests, demos, on-premises hosts). Off: such destinations are refused, after DNS and "
        "on every redirect.",
    )
    allowed_networks: Annotated[list[IPNetwork], NoDecode, STRINGS] = Field(
        default_factory=list,
        description="Non-public networks repository hosts may still be on (CIDRs, e.g. `10.20.0.0/16` for an "
        "on-premises GitLab).",
    )
    banned_specs: Annotated[list[re.Pattern[str]], NoDecode, STRINGS] = Field(
        default_factory=list,
        description="Case-insensitive regexes of repositories that may not be built, searched in "
        "`<provider>/<repository>` (e.g. `^gh/evil-org/`). JSON list, or separated by spaces.",
    )
    banned_specs_message: str = Field(
        "", description="Shown to the user when a repository is banned (or not on `allowed_specs`)."
    )
    allowed_specs: Annotated[list[re.Pattern[str]], NoDecode, STRINGS] = Field(
        default_factory=list,
        description="When set, only repositories matching one of these regexes may be built (same form as "
        "`banned_specs`).",
    )
    spec_config: Annotated[list[InstanceOf[SpecRule]], OBJECTS] = Field(
        default_factory=list,
        description='Per-repository options (JSON), the first matching pattern wins: `[{"pattern": '
        '"^gh/big-org/", "quota": 5}]`; `quota` is the most builds of matching repositories at once.',
    )

    @field_validator("git_credentials", mode="before")
    @classmethod
    def _policy_lists(cls, value: object) -> object:
        return split_policy_list(value)

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        from ..units import parse_networks

        value = split_policy_list(value)
        if isinstance(value, list):
            return [v if not isinstance(v, str) else parse_networks([v])[0] for v in value]
        return value

    @field_validator("banned_specs", "allowed_specs", mode="before")
    @classmethod
    def _patterns(cls, value: object, info: ValidationInfo) -> object:
        # case-insensitive, as the policy matches them; ValueError naming the bad one
        value = split_policy_list(value)
        if isinstance(value, list):
            return [
                v if isinstance(v, re.Pattern) else compile_patterns([v], info.field_name or "pattern")[0]
                for v in value
            ]
        return value

    @field_validator("spec_config", mode="before")
    @classmethod
    def _spec_config(cls, value: object) -> object:
        if isinstance(value, list) and not all(isinstance(v, SpecRule) for v in value):
            return parse_spec_config(value)
        return value

    @field_validator("allowed_git_protocols")
    @classmethod
    def _protocols(cls, value: list[str]) -> list[str]:
        unsafe = {p for p in value if p not in {"http", "https", "git", "ssh"}}
        if unsafe:
            raise ValueError(f"unsupported git protocols: {sorted(unsafe)} (allowed: http, https, git, ssh)")
        return value

    @field_validator("providers")
    @classmethod
    def _providers(cls, value: list[str]) -> list[str]:
        known = PROVIDER_ORDER
        unknown = [p for p in value if p not in known]
        if unknown:
            raise ValueError(f"unknown providers: {unknown} (known: {', '.join(known)})")
        if not value:
            raise ValueError("at least one provider must be enabled")
        return list(dict.fromkeys(value))  # a repeated name is still one provider

    @field_validator("zenodo_urls", "dataverse_installations")
    @classmethod
    def _web_url_lists(cls, value: list[str]) -> list[str]:
        return [cls._web_urls(v) for v in value]

    @field_validator(
        "github_url",
        "github_api_url",
        "gist_url",
        "gitlab_url",
        "doi_resolver_url",
        "figshare_url",
        "figshare_api_url",
        "hydroshare_url",
    )
    @classmethod
    def _web_urls(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if "@" in value.split("/", 3)[2]:
            raise ValueError("must not hold credentials (use the token settings)")
        return value
