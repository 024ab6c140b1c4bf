"""The core every API face calls: a spec becomes a build of a named image."""

from __future__ import annotations

import time

from .auth import Identity
from .builds import Build, BuildManager
from .images.naming import image_name
from .metrics import Metrics
from .policy import SpecPolicy, spec_key
from .providers import Providers, RepoSpec
from .security.destinations import DestinationCheck
from .settings import Settings


class BinderService:
    """Resolve -> name -> look up or build. Both API faces and the CLI go through `request_build`."""

    def __init__(
        self,
        *,
        providers: Providers,
        builds: BuildManager,
        image_prefix: str,
        metrics: Metrics,
        settings: Settings,
        policy: SpecPolicy | None = None,
        destinations: DestinationCheck | None = None,
    ) -> None:
        """`destinations` checks what the build will clone from (None: nothing is checked). `settings`
        and `metrics` are here for the API's handlers: one dependency gives them all they need."""
        self.providers = providers
        self.builds = builds
        self.image_prefix = image_prefix
        self.metrics = metrics
        self.settings = settings
        self.policy = policy or SpecPolicy()
        self.destinations = destinations

    def parse_binderhub(self, provider: str, spec: str) -> RepoSpec:
        """BinderHub's `/build/<provider>/<spec>` -> a RepoSpec."""
        return self.providers.get(provider).parse_spec(spec)

    def parse_native(self, repo: str, ref: str, provider: str | None = None) -> RepoSpec:
        """The native API's repository + ref -> a RepoSpec."""
        return self.providers.for_repo(repo, provider).from_repo(repo, ref)

    async def request_build(self, spec: RepoSpec, *, user: Identity | None = None) -> Build:
        """The build of the image for `spec`: existing (already `ready`), running, or newly started
        (if `user` may start one: `Admission`, consulted by the build manager)."""
        self.policy.check(spec)  # before any network call: a banned repository costs nothing
        started = time.perf_counter()
        resolved = await self.providers.get(spec.provider).resolve(spec)
        if self.destinations is not None:
            # Whether or not resolving connected anywhere (a commit id needs no lookup): the URL the
            # executor will clone from is the one checked.
            await self.destinations.check(resolved.repo_url)
        image = image_name(self.image_prefix, f"{resolved.provider}-{resolved.build_slug}", resolved.commit)
        build = await self.builds.request(resolved, image, user=user, spec_key=spec_key(spec))
        self.metrics.resolve_seconds.labels(spec.provider).observe(time.perf_counter() - started)
        return build
