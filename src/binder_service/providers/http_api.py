"""Plumbing shared by the providers that resolve through a host's REST API (GitHub, GitLab, gists).

One GET at a time through the shared httpx client: an explicit timeout, a size cap, same-origin
redirects only, and every transport failure, 5xx and rate limit turned into the error tree. Callers
read 2xx, 304 and the "is not there" answers (404, 409, 410, 422, 451) themselves: only they know what
is missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from .. import __version__
from ..errors import BinderError, RateLimited, RepoUnreachable, UpstreamError, UpstreamTimeout
from ..security.redaction import scrub
from .git.urls import http_origin

__all__ = ["MISSING", "HttpApi", "QuotaObserver", "Reply", "pick"]

# (api name, limit, remaining, reset epoch) from an answer's rate-limit headers, e.g. into a metric.
QuotaObserver = Callable[[str, float | None, float | None, float | None], None]

log = logging.getLogger(__name__)

MISSING: Final = frozenset({404, 409, 410, 422, 451})
MAX_BODY: Final = 16 << 20  # a gist with its file contents is the biggest answer we read
MAX_REDIRECTS: Final = 3
MAX_WAIT: Final = 3600.0  # GitHub's and GitLab's limits reset within the hour
_USER_AGENT: Final = f"binder-service/{__version__}"  # GitHub refuses requests without one

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer of a REST API, fully read."""

    api: str  # e.g. "GitHub API", for messages
    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def etag(self) -> str | None:
        value: str | None = self.headers.get("etag")
        return value

    @property
    def is_json(self) -> bool:
        ctype = str(self.headers.get("content-type", "")).split(";")[0].strip().lower()
        return ctype == "application/json" or ctype.endswith("+json")

    def json(self) -> Any:
        """The body as JSON; UpstreamError when it is not."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UpstreamError(f"{self.api} answered HTTP {self.status} with malformed JSON") from e

    def message(self) -> str:
        """The `message` of a JSON error body (GitHub's and GitLab's shape), cleaned; '' if there is none."""
        try:
            data = json.loads(self.body)
        except (ValueError, RecursionError):
            return ""
        text = data.get("message") if isinstance(data, dict) else None
        return scrub(text, limit=200) if isinstance(text, str) else ""


def pick(data: Any, *path: str | int, kind: type[T], api: str) -> T:
    """`data[path[0]][path[1]]...` if it is a `kind`; UpstreamError naming the missing field otherwise."""
    value = data
    for step in path:
        in_list = isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value)
        if in_list or (isinstance(step, str) and isinstance(value, dict) and step in value):
            value = value[step]
        else:
            value = None
            break
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        where = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path).lstrip(".")
        raise UpstreamError(f"{api} answered without a valid {where!r} ({kind.__name__} expected)")
    return value


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _seconds(value: str | None, now: float) -> float | None:
    """A Retry-After value (seconds or an HTTP date) as seconds from `now`."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return _finite(float(value))
    try:
        return _finite(parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _epoch(value: str | None) -> float | None:
    """An epoch-seconds header (x-ratelimit-reset); None when absent or not a finite number."""
    try:
        return _finite(float(value)) if value is not None else None
    except ValueError:
        return None


class HttpApi:
    """A host's REST API at `base_url`, through the shared client, each call within `timeout` seconds.

    After a rate-limit answer it refuses further calls itself until the reset time: asking again while
    limited only prolongs the limit (GitHub's secondary limits) and costs a round trip to be told no.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        name: str,
        base_url: str,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        observe_quota: QuotaObserver | None = None,
    ) -> None:
        self.name = name
        self._observe_quota = observe_quota
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._timeout = timeout
        self._headers = {"User-Agent": _USER_AGENT, **(headers or {})}
        self._origin = http_origin(self.base_url)
        self._host = urlsplit(self.base_url).netloc.rpartition("@")[2]
        self._limited_until = 0.0

    async def get(self, path: str, *, headers: Mapping[str, str] | None = None) -> Reply:
        """GET `base_url + path` (`path` already URL-escaped); raises for anything but 2xx/304/MISSING."""
        now = time.time()
        if now < self._limited_until:
            raise self._rate_limited(self._limited_until, now)
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._get(self.base_url + path, {**self._headers, **(headers or {})})
        except BinderError:
            raise
        except (TimeoutError, httpx.TimeoutException) as e:
            raise UpstreamTimeout(f"{self.name} did not answer within {self._timeout:g}s") from e
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as e:  # refused, reset, bad host name
            reason = scrub(str(e), limit=200) or type(e).__name__
            raise RepoUnreachable(f"cannot reach {self.name} at {self._host}: {reason}") from e
        self._quota(reply.headers)
        return self._check(reply)

    def _quota(self, h: httpx.Headers) -> None:
        """Pass the answer's rate-limit headers (GitHub's x-ratelimit-*, GitLab's ratelimit-*) on."""
        if self._observe_quota is None:
            return
        limit, remaining, reset = (
            _epoch(h.get(f"x-ratelimit-{name}", h.get(f"ratelimit-{name}")))
            for name in ("limit", "remaining", "reset")
        )
        if limit is not None or remaining is not None or reset is not None:
            self._observe_quota(self.name, limit, remaining, reset)

    async def _get(self, url: str, headers: dict[str, str]) -> Reply:
        for _ in range(MAX_REDIRECTS + 1):
            async with self._http.stream(
                "GET", url, headers=headers, timeout=self._timeout, follow_redirects=False
            ) as response:
                if response.has_redirect_location:
                    # A renamed repository answers 301. Follow it on the API's own origin only: a
                    # token header must never travel to another host.
                    url = urljoin(url, response.headers["location"])
                    origin = http_origin(url)  # None for another scheme or a port that does not parse
                    if origin is None or origin != self._origin:
                        raise RepoUnreachable(f"{self.name} redirected to another host")
                    continue
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise UpstreamError(f"{self.name} sent more than {MAX_BODY >> 20} MiB")
                return Reply(self.name, response.status_code, response.headers, bytes(body))
        raise RepoUnreachable(f"{self.name} redirected more than {MAX_REDIRECTS} times")

    def _check(self, reply: Reply) -> Reply:
        status = reply.status
        if status in (403, 429):
            limited = self._rate_limit(reply)
            if limited is not None:
                raise limited
        if 200 <= status < 300 or status == 304 or status in MISSING:
            return reply
        message = reply.message()
        detail = f": {message}" if message else ""
        if status >= 500:
            raise RepoUnreachable(f"{self.name} answered {status}")
        if status == 401:
            raise RepoUnreachable(f"{self.name} rejected the configured credentials (HTTP 401){detail}")
        if status == 403:
            raise RepoUnreachable(f"{self.name} refused the request (HTTP 403){detail}")
        raise UpstreamError(f"{self.name} answered HTTP {status}{detail}")

    def _rate_limit(self, reply: Reply) -> RateLimited | None:
        """A RateLimited for a rate-limit answer (GitHub's x-ratelimit-*, GitLab's ratelimit-*), else None."""
        h = reply.headers
        remaining = h.get("x-ratelimit-remaining", h.get("ratelimit-remaining"))
        retry_after = h.get("retry-after")
        # 429 always is one; a 403 only with the limit used up or a Retry-After (GitHub's secondary
        # limits). Any other 403 is a permission problem.
        if reply.status == 403 and remaining != "0" and retry_after is None:
            return None
        now = time.time()
        wait = _seconds(retry_after, now)  # GitHub: Retry-After, when given, wins over the reset time
        until = (
            now + wait if wait is not None else _epoch(h.get("x-ratelimit-reset", h.get("ratelimit-reset")))
        )
        if until is not None:
            until = min(max(until, now), now + MAX_WAIT)  # a nonsense header must not block us for good
        log.warning(
            "%s rate limit reached (limit %s, resource %s); refusing calls until %s",
            self.name,
            h.get("x-ratelimit-limit", h.get("ratelimit-limit", "?")),
            h.get("x-ratelimit-resource", "?"),
            time.strftime("%H:%M:%S UTC", time.gmtime(until)) if until is not None else "told otherwise",
        )
        if until is None:
            return RateLimited(f"{self.name} rate limit reached; try again later")
        self._limited_until = until
        return self._rate_limited(until, now)

    def _rate_limited(self, until: float, now: float) -> RateLimited:
        clock = time.strftime("%H:%M:%S", time.gmtime(until))
        wait = max(0, math.ceil(until - now))
        return RateLimited(f"{self.name} rate limit reached; try again after {clock} UTC (in {wait} s)")
