"""Speaking to a distribution v2 registry: image references and authenticated requests.

`RegistryClient` answers a registry's challenges (anonymous, Basic, Bearer tokens fetched with
Basic credentials or Docker's ``identitytoken``) and keeps the tokens in an `AsyncCache` until
shortly before they expire. `images/store.py`'s `RegistryImageStore` asks it whether an image exists.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from ...caching import AsyncCache
from ...errors import InvalidSpec, RegistryUnavailable, UpstreamTimeout
from ..docker_config import RegistryCredentials, normalize_registry_host

__all__ = ["MANIFEST_TYPES", "RegistryClient", "split_image", "token_ttl"]

# Everything an image built by repo2docker (or pushed by buildx) can be stored as.
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
DEFAULT_TOKEN_LIFETIME = 60.0  # the token spec's assumption when `expires_in` is missing
TOKEN_CACHE_SIZE = 512
CLIENT_ID = "binder-service"

# The grammar of github.com/distribution/reference, without its 255-character total for the host.
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")
_MAX_NAME = 255


def split_image(image: str) -> tuple[str, str, str]:
    """``host/path:tag`` → ``(host or "", path, reference)``; the reference is the tag, or the digest
    after ``@``, and defaults to ``latest``. Raises InvalidSpec for a malformed name."""
    rest, _, digest = image.partition("@")
    host, path = "", rest
    first, slash, remainder = rest.partition("/")
    # As in Docker: a first component that looks like a host is one.
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, remainder
    tag = ""
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
    if "@" in digest or (digest and not _DIGEST_RE.fullmatch(digest)):
        raise InvalidSpec(f"invalid image name {image[:300]!r}: malformed digest")
    if host and not _HOST_RE.fullmatch(host):
        raise InvalidSpec(f"invalid image name {image[:300]!r}: malformed registry host")
    if not path or len(path) > _MAX_NAME or not all(_COMPONENT_RE.fullmatch(c) for c in path.split("/")):
        raise InvalidSpec(f"invalid image name {image[:300]!r}: malformed repository path")
    if tag and not _TAG_RE.fullmatch(tag):
        raise InvalidSpec(f"invalid image name {image[:300]!r}: malformed tag")
    if not tag and not digest and (rest.endswith(":") or image.endswith("@")):
        raise InvalidSpec(f"invalid image name {image[:300]!r}: empty tag")
    return host, path, digest or tag or "latest"


_PARAM_RE = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def _parse_challenges(resp: httpx.Response) -> dict[str, dict[str, str]]:
    """``WWW-Authenticate`` headers → ``{scheme: {param: value}}`` (one challenge per header)."""
    out: dict[str, dict[str, str]] = {}
    for header in resp.headers.get_list("www-authenticate"):
        scheme, _, rest = header.strip().partition(" ")
        params = {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _PARAM_RE.finditer(rest)}
        out.setdefault(scheme.lower(), {k: v.replace('\\"', '"') for k, v in params.items()})
    return out


def _basic(creds: RegistryCredentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _parse_token(resp: httpx.Response) -> tuple[str, float] | None:
    """A token response → ``(token, lifetime)``; None when it holds no token."""
    try:
        body = resp.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    token = body.get("token") or body.get("access_token")
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return (token, float(lifetime)) if isinstance(token, str) and token else None


def token_ttl(lifetime: float) -> float:
    """How long to keep a token granted for `lifetime` seconds: renewed early, so it does not expire
    between our check and the registry's."""
    return lifetime - min(10.0, lifetime * 0.1)


class RegistryClient:
    """Requests to one registry, authenticated as its challenges ask. The HTTP client is borrowed."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        credentials: RegistryCredentials | None,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query:
            raise ValueError("registry URL must look like http(s)://host[:port] with no credentials")
        self.url = url.rstrip("/")
        self.display = f"{parts.scheme}://{parts.netloc}"
        self.is_docker_hub = normalize_registry_host(parts.netloc) == "docker.io"
        self._http = http
        self._creds = credentials
        self._timeout = timeout
        # (token, lifetime) by realm, service and scope; each kept for its own lifetime.
        self._tokens: AsyncCache[str, tuple[str, float]] = AsyncCache(
            ttl=DEFAULT_TOKEN_LIFETIME, max_size=TOKEN_CACHE_SIZE, clock=clock
        )
        # Learned from the first challenge, so later requests authenticate up front.
        self._scheme: str | None = None
        self._bearer: tuple[str, str] = ("", "")

    async def request(
        self,
        method: str,
        path: str,
        *,
        repo: str,
        headers: dict[str, str] | None = None,
        actions: str = "pull",
    ) -> httpx.Response:
        """`method` on `path` (below the registry URL) with `actions` rights on `repo` (a manifest
        DELETE needs `delete`).

        A 401 or 403 that remains after answering the challenge is returned, for the caller to word.
        """
        url, scope = f"{self.url}{path}", f"repository:{repo}:{actions}"
        auth = await self._known_auth(scope, repo)
        resp = await self.send(method, url, headers={**(headers or {}), **auth})
        if resp.status_code == 401 and not auth.get("Authorization", "").startswith("Basic "):
            self._tokens.discard(self._token_key(scope))  # a cached token the registry no longer takes
            auth = await self._answer(resp, scope, repo)
            resp = await self.send(method, url, headers={**(headers or {}), **auth})
        return resp

    def refused(self, repo: str) -> RegistryUnavailable:
        """The error for a registry that will not let us read `repo`."""
        if self._creds is None:
            return RegistryUnavailable(f"registry {self.display} wants credentials for {repo}; none are set")
        return RegistryUnavailable(f"registry refused our credentials for {repo}")

    def forget_tokens(self) -> None:
        self._tokens.clear()

    def _token_key(self, scope: str) -> str:
        return f"{self._bearer[0]} {self._bearer[1]} {scope}"

    async def _known_auth(self, scope: str, repo: str) -> dict[str, str]:
        if self._scheme == "basic" and self._creds is not None:
            return {"Authorization": _basic(self._creds)}
        if self._scheme == "bearer":
            return {"Authorization": f"Bearer {await self._token(scope, repo)}"}
        return {}

    async def _answer(self, resp: httpx.Response, scope: str, repo: str) -> dict[str, str]:
        """Authorization for a 401, from its challenge."""
        challenges = _parse_challenges(resp)
        if "bearer" in challenges:
            realm = challenges["bearer"].get("realm", "")
            if urlsplit(realm).scheme not in ("http", "https"):
                raise RegistryUnavailable(f"registry {self.display} sent an unusable token realm")
            self._scheme, self._bearer = "bearer", (realm, challenges["bearer"].get("service", ""))
            return {"Authorization": f"Bearer {await self._token(scope, repo)}"}
        if "basic" in challenges:
            if self._creds is None or not self._creds.username:
                raise RegistryUnavailable(
                    f"registry {self.display} wants credentials for {repo}; none are set"
                )
            self._scheme = "basic"
            return {"Authorization": _basic(self._creds)}
        raise RegistryUnavailable(f"registry {self.display} wants an authentication scheme we do not speak")

    async def _token(self, scope: str, repo: str) -> str:
        # Single flight: concurrent lookups of one repository ask the token service once.
        token, _ = await self._tokens.get_or_compute(
            self._token_key(scope),
            lambda: self._fetch_token(self._bearer, scope, repo),
            ttl=lambda t: token_ttl(t[1]),
        )
        return token

    async def _fetch_token(self, bearer: tuple[str, str], scope: str, repo: str) -> tuple[str, float]:
        realm, service = bearer
        creds = self._creds
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token}
            form |= {"client_id": CLIENT_ID, "scope": scope} | ({"service": service} if service else {})
            resp = await self.send("POST", realm, data=form, what="token service of registry")
        else:
            params = {"scope": scope} | ({"service": service} if service else {})
            headers = {"Authorization": _basic(creds)} if creds is not None and creds.username else {}
            resp = await self.send(
                "GET", realm, params=params, headers=headers, what="token service of registry"
            )
        if resp.status_code in (401, 403):
            raise self.refused(repo)
        if resp.status_code != 200:
            raise RegistryUnavailable(
                f"token service of registry {self.display} answered HTTP {resp.status_code}"
            )
        parsed = _parse_token(resp)
        if parsed is None:
            raise RegistryUnavailable(f"token service of registry {self.display} answered without a token")
        return parsed

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        what: str = "registry",
    ) -> httpx.Response:
        """One unauthenticated request with the timeout; transport errors and 5xx become our errors."""
        try:
            resp = await self._http.request(
                method, url, headers=headers, params=params, data=data, timeout=self._timeout
            )
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(f"{what} {self.display} did not answer within {self._timeout:g}s") from e
        except httpx.HTTPError as e:
            raise RegistryUnavailable(f"{what} {self.display} is not reachable") from e
        if resp.status_code >= 500:
            raise RegistryUnavailable(f"{what} {self.display} answered HTTP {resp.status_code}")
        return resp
