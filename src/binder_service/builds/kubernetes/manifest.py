"""`binder-service pod-manifest REPO --ref REF`: the build pod the service would create, printed, never sent.

An operator checks it against their admission policies (Pod Security admission, Kyverno, Gatekeeper) before
deploying. It goes the service's own way: the providers turn REPO and REF into a resolved commit, the image is
named as the service names it, and `build_pod` makes the manifest from `pod_template(settings)`, as the
executor does. Nothing contacts a cluster. A commit id as REF resolves without any network call (git
repositories); a branch or tag is resolved with the repository's host, as a request would be.

What differs from a real build pod: the build id (a placeholder), the requester (none), and with the Docker
engine the `--cache-from` image (the repository's latest image, looked up in the registry at build time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...images.naming import image_name, qualified_prefix
from ...providers.registry import make_providers
from ...security.credentials import GitCredentials
from ...security.egress import EgressPolicy
from ...settings import Settings
from ..executor import BuildJob
from .pod import build_pod
from .setup import pod_template

BUILD_ID = "pod-manifest"  # in place of a real build's id (a pod annotation)


async def planned_pod(
    settings: Settings, environ: Mapping[str, str], repo: str, ref: str, provider: str | None = None
) -> dict[str, Any]:
    """The pod manifest a build of `repo` at `ref` would get with `settings`."""
    credentials = GitCredentials.from_config(
        settings.git_credentials,
        github_url=settings.github_url,
        github_token=settings.github_token,
        gitlab_url=settings.gitlab_url,
        gitlab_token=settings.gitlab_token,
    )
    egress = EgressPolicy(
        allow_private=settings.allow_private_networks, allowed_networks=settings.allowed_networks
    )
    async with egress.http_client(timeout=settings.resolve_timeout) as http:
        providers = make_providers(settings, http, egress=egress, credentials=credentials, environ=environ)
        spec = providers.for_repo(repo, provider).from_repo(repo, ref)
        resolved = await providers.get(spec.provider).resolve(spec)
    prefix = qualified_prefix(settings.image_prefix, settings.registry_url)
    image = image_name(prefix, f"{resolved.provider}-{resolved.build_slug}", resolved.commit)
    job = BuildJob(
        build_id=BUILD_ID,
        image_name=image,
        repo=resolved,
        push=bool(settings.registry_url),
        layer_cache=settings.layer_cache,
    )
    return build_pod(job, pod_template(settings))
