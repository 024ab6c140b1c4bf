"""The `ckan` provider: a dataset on a CKAN site. Spec: the URL-escaped dataset URL.

`https://demo.ckan.org/dataset/sample-dataset-1` (CKAN may live under a path prefix) is looked up with
the action API, `GET <site>/api/3/action/package_show?id=<name>`. The dataset's `metadata_modified`
is the "commit" (`v<epoch seconds>`, as BinderHub does); a URL naming an activity
(`/dataset/<name>/history/<activity id>` or `?activity_id=`) is pinned to that activity instead.
The slug is the dataset's id, which survives renames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self, Unpack
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx

from ..errors import BinderError, InvalidSpec, RepoNotAllowed, RepoNotFound, UpstreamError
from .base import RepoSpec
from .datasets import DatasetOptions, DatasetProvider, Pinned, epoch_version
from .http_api import HttpApi, pick

if TYPE_CHECKING:
    from .registry import ProviderContext

__all__ = ["CKANProvider"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")  # CKAN's package name/id rule (names are lower case)
_ACTIVITY = re.compile(r"[A-Za-z0-9-]{1,64}")


@dataclass(frozen=True, slots=True)
class DatasetUrl:
    site: str  # scheme://host[:port][/prefix]
    name: str  # dataset name or id
    activity: str | None

    def __str__(self) -> str:
        history = f"/history/{self.activity}" if self.activity else ""
        return f"{self.site}/dataset/{self.name}{history}"


class CKANProvider(DatasetProvider):
    """Datasets on CKAN sites: the allowed hosts, or any (public) host when none are configured."""

    name = "ckan"
    display_name = "CKAN dataset"
    spec_example = "https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample-dataset-1"
    spec_regex = r"^(?P<url>[^/]+)(/(?P<ref>.*))?$"
    repo_label = "CKAN dataset URL"
    content_provider = "CKAN"

    @classmethod
    def from_settings(cls, context: ProviderContext) -> Self:
        """The provider as the settings configure it (the providers' registry calls this)."""
        s = context.settings
        return cls(context.http, hosts=s.ckan_hosts, timeout=s.resolve_timeout, **context.options)

    def __init__(
        self, http: httpx.AsyncClient, *, hosts: list[str], timeout: float, **options: Unpack[DatasetOptions]
    ) -> None:
        super().__init__(**options)
        self._http = http
        self._hosts = frozenset(h.lower() for h in hosts)
        self._timeout = timeout

    def parse_spec(self, spec: str) -> RepoSpec:
        """`<URL-escaped dataset URL>[/<ref>]`: an escaped URL has no raw slash."""
        self._check_length("spec", spec)
        quoted, _, ref = spec.partition("/")
        return self.from_repo(unquote(quoted), unquote(ref) or "HEAD")

    def claims(self, repo: str) -> bool:
        # Only on configured hosts: a "/dataset/" path on any host could as well be a git repository.
        if not self._hosts:
            return False
        try:
            self._dataset_url(repo)
        except BinderError:
            return False
        return True

    def canonical(self, repo: str) -> str:
        return str(self._dataset_url(repo))

    def _dataset_url(self, url: str) -> DatasetUrl:
        """The parts of a dataset URL; InvalidSpec (RepoNotAllowed for a host not allowed) otherwise."""
        usage = "a CKAN spec is an http(s) dataset URL: <site>/dataset/<name>[/history/<activity id>]"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise InvalidSpec(usage) from None
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
            raise InvalidSpec(usage)
        netloc = host if port is None else f"{host}:{port}"
        if self._hosts and host not in self._hosts and netloc not in self._hosts:
            raise RepoNotAllowed(f"{host} is not one of the allowed CKAN hosts")
        prefix, sep, rest = parts.path.partition("/dataset/")
        segments = rest.strip("/").split("/") if sep else []
        activity = None
        if len(segments) == 3 and segments[1] == "history":
            activity = segments[2]
        elif len(segments) != 1:
            raise InvalidSpec(usage)
        ids = parse_qs(parts.query).get("activity_id")
        if activity is None and ids:
            activity = ids[0]
        name = segments[0]
        if not _NAME.fullmatch(name):
            raise InvalidSpec(f"{name[:100]!r} is not a CKAN dataset name")
        if activity is not None and not _ACTIVITY.fullmatch(activity):
            raise InvalidSpec(f"{activity[:100]!r} is not a CKAN activity id")
        return DatasetUrl(f"{parts.scheme}://{netloc}{prefix.rstrip('/')}", name, activity)

    def _cache_key(self, repo: str) -> str:
        return str(self._dataset_url(repo))  # names and activity ids are case-sensitive

    async def _pin(self, repo: str) -> Pinned:
        dataset = self._dataset_url(repo)
        dataset_id, version = await self._lookup(dataset)
        return Pinned(
            repo_url=str(dataset),
            commit=version,
            build_slug=f"{dataset.site.split('://', 1)[1]}/{dataset_id}",
        )

    async def _lookup(self, dataset: DatasetUrl) -> tuple[str, str]:
        host = urlsplit(dataset.site).netloc
        api = HttpApi(
            self._http,
            name=f"CKAN API at {host}",
            base_url=f"{dataset.site}/api/3/action",
            timeout=self._timeout,
        )
        reply = await api.get(f"/package_show?id={quote(dataset.name, safe='')}")
        if reply.status in (404, 410):
            raise RepoNotFound(f"CKAN dataset {dataset.name} not found on {host}")
        if reply.status != 200:
            raise UpstreamError(f"{reply.api} answered HTTP {reply.status} for a dataset")
        data = reply.json()
        if pick(data, "success", kind=bool, api=reply.api) is not True:
            raise UpstreamError(f"{reply.api} answered without success")
        result = pick(data, "result", kind=dict, api=reply.api)
        dataset_id = pick(result, "id", kind=str, api=reply.api)
        if not _NAME.fullmatch(dataset_id):
            raise UpstreamError(f"{reply.api} answered with an unreadable dataset id")
        if result.get("state", "active") != "active":
            raise RepoNotFound(f"CKAN dataset {dataset.name} on {host} was deleted")
        if dataset.activity is not None:
            return dataset_id, f"activity-{dataset.activity}"  # an activity is one immutable version
        modified = epoch_version(result.get("metadata_modified"), api=reply.api, field="metadata_modified")
        return dataset_id, modified
