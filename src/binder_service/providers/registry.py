"""Every provider there is, and the enabled ones made from Settings.

`PROVIDERS` is the registry: the provider classes in the default URL-detection order. Each class makes
itself with `from_settings(context)`; the names `Settings.providers` accepts are read from here, so a
new provider is one class added to the tuple (docs/contributing.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import httpx

from ..provider_order import PROVIDER_ORDER
from . import Providers
from .base import RepoProvider
from .ckan import CKANProvider
from .datasets import DatasetOptions
from .dataverse import DataverseProvider
from .doi import DoiResolver
from .figshare import FigshareProvider
from .gist import GistProvider
from .git.provider import GitProvider
from .github import GitHubProvider, github_api
from .gitlab import GitLabProvider
from .http_api import HttpApi, QuotaObserver
from .hydroshare import HydroShareProvider
from .zenodo import ZenodoProvider

if TYPE_CHECKING:
    from ..security.credentials import GitCredentials
    from ..security.egress import EgressPolicy
    from ..settings import Settings

__all__ = ["PROVIDERS", "ProviderContext", "make_providers", "provider_names"]

# The dataset providers cost nothing unused, so every provider is enabled by default, in this order.
PROVIDERS: tuple[type[RepoProvider], ...] = (
    GitHubProvider,
    GitLabProvider,
    GistProvider,
    ZenodoProvider,
    FigshareProvider,
    HydroShareProvider,
    DataverseProvider,
    CKANProvider,
    GitProvider,
)


def provider_names() -> tuple[str, ...]:
    """The names of every provider, in the default detection order."""
    return tuple(p.name for p in PROVIDERS)


# The settings know the providers by these names only (a leaf they import without the providers).
if provider_names() != PROVIDER_ORDER:
    raise ImportError(f"provider_order.PROVIDER_ORDER {PROVIDER_ORDER} is not PROVIDERS' {provider_names()}")


@dataclass
class ProviderContext:
    """What a provider is made from: the settings and the app's parts, and the clients providers share.

    `http` should be `egress.http_client()`: the providers' HTTP is then checked by the same policy
    that `egress` applies to git:// and ssh.
    """

    settings: Settings
    http: httpx.AsyncClient
    egress: EgressPolicy | None = None
    credentials: GitCredentials | None = None
    observe_quota: QuotaObserver | None = None
    environ: Mapping[str, str] | None = None

    @cached_property
    def github(self) -> HttpApi:
        """One GitHub API client for `gh` and `gist`: they share the token and its rate limit."""
        s = self.settings
        return github_api(
            self.http,
            api_url=s.github_api_url,
            token=s.github_token,
            timeout=s.resolve_timeout,
            observe_quota=self.observe_quota,
        )

    @cached_property
    def doi(self) -> DoiResolver:
        """One DOI resolver (and its cache) for the dataset providers."""
        s = self.settings
        return DoiResolver(
            self.http, base_url=s.doi_resolver_url, timeout=s.resolve_timeout, cache_ttl=s.doi_cache_ttl
        )

    def api(self, name: str, base_url: str) -> HttpApi:
        """A JSON API client named for its errors (`Zenodo API at zenodo.org`)."""
        return HttpApi(
            self.http,
            name=name,
            base_url=base_url,
            timeout=self.settings.resolve_timeout,
            observe_quota=self.observe_quota,
        )

    @property
    def options(self) -> DatasetOptions:
        """The options every provider takes: the input limit and the two cache times."""
        s = self.settings
        return {
            "max_input_length": s.max_input_length,
            "ref_cache_ttl": s.ref_cache_ttl,
            "not_found_ttl": s.not_found_cache_ttl,
        }


def make_providers(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    egress: EgressPolicy | None = None,
    credentials: GitCredentials | None = None,
    observe_quota: QuotaObserver | None = None,
    environ: Mapping[str, str] | None = None,
) -> Providers:
    """The enabled providers, in the order of `settings.providers` (which is URL detection's order)."""
    context = ProviderContext(settings, http, egress, credentials, observe_quota, environ)
    by_name = {p.name: p for p in PROVIDERS}
    return Providers([by_name[name].from_settings(context) for name in settings.providers])
