"""repo2docker's command line, the same for the local process and the build pod."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import BuildError
from .executor import BuildJob

# Only the content provider the request needs: faster, and repo2docker's Dataverse/Mercurial detection
# would otherwise reach out to the internet (or run `hg`) for every URL.
_R2D_CONFIG = """\
from repo2docker.contentproviders import {provider}
c.Repo2Docker.content_providers = [{provider}]
"""


def r2d_config(content_provider: str, repo_url: str = "") -> str:
    """The repo2docker config file (Python) that restricts it to `content_provider`."""
    if not content_provider.isidentifier():
        raise BuildError(f"unknown repo2docker content provider {content_provider!r}")
    config = _R2D_CONFIG.format(provider=content_provider)
    if content_provider == "Dataverse":
        # Its installation list would be downloaded first; the dataset's (configured, checked) host is
        # the one it needs.
        host = urlsplit(repo_url).netloc
        config += f"Dataverse.hosts = [{{'hostname': {host!r}}}]\n"
    return config


def r2d_args(job: BuildJob, extra_args: list[str], *, engine: str = "docker") -> list[str]:
    """All after `repo2docker --config <file>`; the repository URL comes after `--`: never an option.
    `engine`: settings.engine (`buildah`: our engine plugin, engines/buildah.py)."""
    return [
        *(["--engine", engine] if engine != "docker" else []),
        "--json-logs",
        "--no-run",
        "--user-id", "1000",
        "--user-name", "jovyan",
        "--image-name", job.image_name,
        "--ref", job.repo.commit,
        *(["--push"] if job.push else []),
        *(_buildah_cache_args(job) if engine == "buildah" else _cache_args(job)),
        *extra_args,
        "--",
        job.repo.repo_url,
    ]  # fmt: skip


def _cache_args(job: BuildJob) -> list[str]:
    """Inline cache out, the repository's latest image in: what lets a fresh engine skip unchanged steps.

    buildx's docker driver writes inline cache metadata (not a separate cache export) when asked with
    the BUILDKIT_INLINE_CACHE build argument; a `--cache-from` image that is missing only logs an error.
    """
    if not job.layer_cache:
        return []
    args = ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    if job.cache_from:
        args += ["--cache-from", job.cache_from]
    return args


def _buildah_cache_args(job: BuildJob) -> list[str]:
    """buildah's layer cache is a registry repository per image repository (engines/buildah.py maps any
    image of the repository to it): the image's own name names it even for the repository's first build,
    which fills it (`--cache-to`) for the next."""
    if not job.layer_cache or not job.push:
        return []
    return ["--cache-from", job.cache_from or job.image_name]
