"""Does this image already exist? Asked of a registry (distribution v2 API) or of a Docker engine.

A build is skipped when its image is already there, so this is on the hot path of every launch: a
registry lookup with a cached bearer token is one HEAD request.
"""

from __future__ import annotations

import base64
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote, urlsplit

import httpx

from .docker_config import DockerConfig, RegistryCredentials, normalize_registry_host
from .errors import EngineUnavailable, InvalidSpec, RegistryUnavailable, UpstreamTimeout

__all__ = [
    "DockerConfig",
    "EngineImageStore",
    "ImageStore",
    "RegistryCredentials",
    "RegistryImageStore",
    "split_image",
]

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


class ImageStore(Protocol):
    """Where built images live."""

    async def exists(self, image: str) -> bool:
        """True when ``image`` (``host/path:tag``) is there, False when it is not."""
        ...

    async def check(self) -> None:
        """Health probe: raise RegistryUnavailable, EngineUnavailable or UpstreamTimeout when down."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds."""
        ...


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


class _TokenCache:
    """Bearer tokens by scope, dropped shortly before they expire; least recently used go first."""

    def __init__(
        self, max_entries: int = TOKEN_CACHE_SIZE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_entries
        self._clock = clock
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        if self._clock() >= item[1]:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, token: str, lifetime: float) -> None:
        # Renew early so a token does not expire between our check and the registry's.
        self._items[key] = (token, self._clock() + lifetime - min(10.0, lifetime * 0.1))
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


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


class RegistryImageStore:
    """Images in a distribution v2 registry, looked up with HEAD on the manifest.

    Speaks anonymous, Basic and Bearer-token auth (GET with Basic credentials, or POST with Docker's
    ``identitytoken`` as OAuth2 refresh token). The HTTP client is borrowed, not closed here.
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        credentials: RegistryCredentials | None,
        timeout: float,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query:
            raise ValueError("registry URL must look like http(s)://host[:port] with no credentials")
        self._url = url.rstrip("/")
        self._display = f"{parts.scheme}://{parts.netloc}"
        self._hub = normalize_registry_host(parts.netloc) == "docker.io"
        self._http = http
        self._creds = credentials
        self._timeout = timeout
        self._tokens = _TokenCache()
        # Learned from the first challenge, so later lookups authenticate up front.
        self._scheme: str | None = None
        self._bearer: tuple[str, str] = ("", "")

    async def exists(self, image: str) -> bool:
        _, repo, ref = split_image(image)
        if self._hub and "/" not in repo:
            repo = f"library/{repo}"
        url = f"{self._url}/v2/{repo}/manifests/{ref}"
        scope = f"repository:{repo}:pull"
        auth = await self._known_auth(scope, repo)
        resp = await self._send("HEAD", url, headers={"Accept": MANIFEST_TYPES, **auth})
        if resp.status_code == 401 and not auth.get("Authorization", "").startswith("Basic "):
            self._tokens.drop(self._token_key(scope))  # a cached token the registry no longer takes
            auth = await self._answer(resp, scope, repo)
            resp = await self._send("HEAD", url, headers={"Accept": MANIFEST_TYPES, **auth})
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        if resp.status_code in (401, 403):
            raise self._refused(repo)
        raise RegistryUnavailable(f"registry {self._display} answered HTTP {resp.status_code} for {repo}")

    async def check(self) -> None:
        resp = await self._send("GET", f"{self._url}/v2/")
        # 401 is a live registry that wants credentials; those are checked per repository.
        if resp.status_code not in (200, 401):
            raise RegistryUnavailable(f"registry {self._display} answered HTTP {resp.status_code} on /v2/")

    async def aclose(self) -> None:
        self._tokens.clear()

    def _refused(self, repo: str) -> RegistryUnavailable:
        if self._creds is None:
            return RegistryUnavailable(f"registry {self._display} wants credentials for {repo}; none are set")
        return RegistryUnavailable(f"registry refused our credentials for {repo}")

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
                raise RegistryUnavailable(f"registry {self._display} sent an unusable token realm")
            self._scheme, self._bearer = "bearer", (realm, challenges["bearer"].get("service", ""))
            return {"Authorization": f"Bearer {await self._token(scope, repo)}"}
        if "basic" in challenges:
            if self._creds is None or not self._creds.username:
                raise RegistryUnavailable(
                    f"registry {self._display} wants credentials for {repo}; none are set"
                )
            self._scheme = "basic"
            return {"Authorization": _basic(self._creds)}
        raise RegistryUnavailable(f"registry {self._display} wants an authentication scheme we do not speak")

    async def _token(self, scope: str, repo: str) -> str:
        key = self._token_key(scope)
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
        realm, service = self._bearer
        creds = self._creds
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token}
            form |= {"client_id": CLIENT_ID, "scope": scope} | ({"service": service} if service else {})
            resp = await self._send("POST", realm, data=form, what="token service of registry")
        else:
            params = {"scope": scope} | ({"service": service} if service else {})
            headers = {"Authorization": _basic(creds)} if creds is not None and creds.username else {}
            resp = await self._send(
                "GET", realm, params=params, headers=headers, what="token service of registry"
            )
        if resp.status_code in (401, 403):
            raise self._refused(repo)
        if resp.status_code != 200:
            raise RegistryUnavailable(
                f"token service of registry {self._display} answered HTTP {resp.status_code}"
            )
        parsed = _parse_token(resp)
        if parsed is None:
            raise RegistryUnavailable(f"token service of registry {self._display} answered without a token")
        self._tokens.put(key, *parsed)
        return parsed[0]

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        what: str = "registry",
    ) -> httpx.Response:
        try:
            resp = await self._http.request(
                method, url, headers=headers, params=params, data=data, timeout=self._timeout
            )
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(f"{what} {self._display} did not answer within {self._timeout:g}s") from e
        except httpx.HTTPError as e:
            raise RegistryUnavailable(f"{what} {self._display} is not reachable") from e
        if resp.status_code >= 500:
            raise RegistryUnavailable(f"{what} {self._display} answered HTTP {resp.status_code}")
        return resp


class EngineImageStore:
    """Images in a Docker engine (the local build's target when nothing is pushed)."""

    def __init__(self, docker_host: str, *, timeout: float) -> None:
        parts = urlsplit(docker_host)
        transport: httpx.AsyncHTTPTransport | None = None
        if parts.scheme == "unix" and parts.path:
            transport, base = httpx.AsyncHTTPTransport(uds=parts.path), "http://docker"
        elif parts.scheme in ("tcp", "http") and parts.netloc:
            base = f"http://{parts.netloc}"  # TLS (DOCKER_TLS_VERIFY) is not supported
        else:
            raise ValueError("DOCKER_HOST must be unix:///path/docker.sock or tcp://host:port")
        self._host = docker_host
        self._timeout = timeout
        self._http = httpx.AsyncClient(base_url=base, transport=transport, timeout=timeout)

    async def exists(self, image: str) -> bool:
        split_image(image)  # a validated name cannot steer the request to another API path
        resp = await self._get(f"/images/{quote(image, safe='/:@')}/json")
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise EngineUnavailable(f"Docker engine at {self._host} answered HTTP {resp.status_code}")

    async def check(self) -> None:
        resp = await self._get("/_ping")
        if resp.status_code != 200:
            raise EngineUnavailable(f"Docker engine at {self._host} answered HTTP {resp.status_code}")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str) -> httpx.Response:
        try:
            return await self._http.get(path)
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(
                f"Docker engine at {self._host} did not answer within {self._timeout:g}s"
            ) from e
        except httpx.HTTPError as e:
            raise EngineUnavailable(f"Docker engine at {self._host} is not reachable") from e
