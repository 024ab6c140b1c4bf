"""What the layer cache and the registry GC ask a registry: tags of a repository, when an image was
made, its manifest digest, and deleting a manifest. Auth and timeouts are `RegistryClient`'s."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from ...errors import RegistryUnavailable
from .client import MANIFEST_TYPES, RegistryClient

MAX_TAG_PAGES = 50  # tags/list is paged (n=1000): enough for every commit of one repository
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


class DeleteDisabled(RegistryUnavailable):
    """The registry refuses manifest deletes (distribution answers 405 UNSUPPORTED)."""


class RegistryImages:
    """Read and delete images of one registry."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    async def tags(self, repo: str) -> list[str]:
        """Every tag of `repo` (the path, without host); [] when the repository does not exist."""
        tags: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list?n=1000"
        for _ in range(MAX_TAG_PAGES):
            if path is None:
                break
            resp = await self.client.request("GET", path, repo=repo)
            if resp.status_code == 404:
                return tags
            self._check(resp, repo)
            body = _json(resp)
            found = body.get("tags") if isinstance(body, dict) else None
            tags += [t for t in found or [] if isinstance(t, str)]
            path = _next_page(resp)
        return tags

    async def digest(self, repo: str, tag: str) -> str | None:
        """The manifest digest `tag` points at; None when there is no such tag."""
        resp = await self.client.request(
            "HEAD", f"/v2/{repo}/manifests/{tag}", repo=repo, headers={"Accept": MANIFEST_TYPES}
        )
        if resp.status_code == 404:
            return None
        self._check(resp, repo)
        digest = resp.headers.get("docker-content-digest")
        return str(digest) if digest else None

    async def created(self, repo: str, tag: str) -> datetime | None:
        """When the image `repo:tag` was made (its config's `created`); None if unknown or missing."""
        manifest = await self._manifest(repo, tag)
        if manifest is not None and manifest.get("mediaType") in _INDEX_TYPES:
            entries = manifest.get("manifests") or []
            first = entries[0].get("digest") if entries and isinstance(entries[0], dict) else None
            manifest = await self._manifest(repo, first) if isinstance(first, str) else None
        config = manifest.get("config") if manifest else None
        digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(digest, str):
            return None
        resp = await self.client.request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo)
        if resp.status_code in (307, 302):  # blobs may live elsewhere (S3): follow one hop, unauthenticated
            location = resp.headers.get("location", "")
            if urlsplit(location).scheme not in ("http", "https"):
                return None
            resp = await self.client.send("GET", location)
        if resp.status_code != 200:
            return None
        created = _json(resp).get("created")
        try:
            return datetime.fromisoformat(created) if isinstance(created, str) else None
        except ValueError:
            return None

    async def newest(self, repo: str, *, limit: int = 50, concurrency: int = 8) -> str | None:
        """The most recently made tag of `repo`, looking at up to `limit` tags."""
        tags = (await self.tags(repo))[-limit:]
        gate = asyncio.Semaphore(concurrency)

        async def when(tag: str) -> tuple[datetime | None, str]:
            async with gate:
                return await self.created(repo, tag), tag

        dated = [(t, tag) for t, tag in await asyncio.gather(*map(when, tags)) if t is not None]
        return max(dated)[1] if dated else None

    async def delete(self, repo: str, digest: str) -> bool:
        """Delete the manifest `digest` (every tag pointing at it goes too); False if already gone."""
        resp = await self.client.request(
            "DELETE", f"/v2/{repo}/manifests/{digest}", repo=repo, actions="delete"
        )
        if resp.status_code in (200, 202):
            return True
        if resp.status_code == 404:
            return False
        if resp.status_code == 405:
            raise DeleteDisabled(
                f"registry {self.client.display} does not allow deleting images (HTTP 405 UNSUPPORTED); "
                "enable it with `storage: delete: enabled: true` in the registry's configuration"
            )
        self._check(resp, repo)
        raise RegistryUnavailable(f"registry {self.client.display} answered HTTP {resp.status_code}")

    async def _manifest(self, repo: str, ref: str) -> dict[str, Any] | None:
        resp = await self.client.request(
            "GET", f"/v2/{repo}/manifests/{ref}", repo=repo, headers={"Accept": MANIFEST_TYPES}
        )
        if resp.status_code == 404:
            return None
        self._check(resp, repo)
        body = _json(resp)
        return body or None

    def _check(self, resp: httpx.Response, repo: str) -> None:
        if resp.status_code in (401, 403):
            raise self.client.refused(repo)
        if resp.status_code >= 400:
            raise RegistryUnavailable(
                f"registry {self.client.display} answered HTTP {resp.status_code} for {repo}"
            )


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(resp.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _next_page(resp: httpx.Response) -> str | None:
    # `Link: </v2/x/tags/list?last=y&n=1000>; rel="next"`: a path on the same registry.
    link = resp.headers.get("link", "")
    if 'rel="next"' not in link or not link.startswith("<"):
        return None
    target = link[1 : link.index(">")]
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/v2/"):
        return None
    return f"{parts.path}?{parts.query}" if parts.query else parts.path
