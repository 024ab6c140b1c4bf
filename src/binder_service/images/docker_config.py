"""Registry credentials from a Docker client ``config.json``.

Only inline ``auths`` entries are read. Credential stores (``credsStore``/``credHelpers``) run external
programs; they are not supported and only produce a warning.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# Docker Hub is known under several names; `docker login` writes the legacy index URL.
_DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)

_warned_helpers: set[str] = set()


@dataclass(frozen=True)
class RegistryCredentials:
    """A username and password (or OAuth refresh token) for one registry. The secrets never show in repr."""

    username: str
    password: str = field(repr=False)
    # Docker's `identitytoken`: an OAuth2 refresh token for the registry's token service.
    identity_token: str | None = field(default=None, repr=False)


def normalize_registry_host(key: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``http://Host:5000`` → ``host:5000``."""
    key = key.strip()
    host = urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    host = host.lower()
    return _DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


class DockerConfig:
    """The ``auths`` of a parsed Docker ``config.json``, keyed by normalized registry host."""

    def __init__(self, auths: dict[str, RegistryCredentials] | None = None) -> None:
        self._auths = {normalize_registry_host(k): v for k, v in (auths or {}).items()}

    def __repr__(self) -> str:
        return f"DockerConfig(hosts={sorted(self._auths)!r})"

    @classmethod
    def load(cls, path: Path | None) -> DockerConfig:
        """Read ``path``; no path or a missing file means no credentials. A broken file raises ValueError."""
        if path is None or not path.exists():
            return cls()
        try:
            data = json.loads(path.read_bytes())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            # The message names the path only: the file holds secrets.
            raise ValueError(f"Docker config {path} is not readable JSON ({type(e).__name__})") from None
        return cls.from_json(data, source=str(path))

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<config>") -> DockerConfig:
        """Build from already-parsed JSON; ``source`` names it in error messages."""
        if not isinstance(data, dict):
            raise ValueError(f"Docker config {source} is not a JSON object")
        if (data.get("credsStore") or data.get("credHelpers")) and source not in _warned_helpers:
            _warned_helpers.add(source)
            log.warning(
                "Docker config %s uses credsStore/credHelpers, which binder-service does not run; "
                "only inline 'auths' entries are used",
                source,
            )
        auths = data.get("auths", {})
        if not isinstance(auths, dict):
            raise ValueError(f"Docker config {source}: 'auths' is not a JSON object")
        parsed: dict[str, RegistryCredentials] = {}
        for key, entry in auths.items():
            creds = _parse_entry(entry, f"Docker config {source}: entry {key!r}")
            if creds is not None:
                parsed[key] = creds
        return cls(parsed)

    def credentials_for(self, registry_host: str) -> RegistryCredentials | None:
        """Credentials for a registry host (``host[:port]``, or a URL); None when there are none."""
        return self._auths.get(normalize_registry_host(registry_host))


def _parse_entry(entry: Any, where: str) -> RegistryCredentials | None:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a JSON object")
    username, password = "", ""
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"{where}: 'auth' is not base64 of 'user:password'") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ValueError(f"{where}: 'auth' is not base64 of 'user:password'")
    username = str(entry.get("username") or username)
    password = str(entry.get("password") or password)
    token = entry.get("identitytoken") or None
    if token is not None and not isinstance(token, str):
        raise ValueError(f"{where}: 'identitytoken' is not a string")
    if not (username or password or token):
        return None  # e.g. `{}` left behind by a credential helper
    return RegistryCredentials(username, password, identity_token=token)
