"""Git credentials for private repositories: operator-configured, per origin, never shown anywhere.

One list of `scheme://user:password@host[:port]` entries (git's credential-store format) made from
`git_credentials` plus the GitHub and GitLab tokens. The service uses them when it reads a repository's
refs over smart HTTP (basic auth, sent only to the matching origin), and hands them to repo2docker's
`git` through a credential-store file, so no secret is ever on a command line or in a URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import httpx
from pydantic import SecretStr

from ..providers.git.urls import http_origin

__all__ = ["GitCredential", "GitCredentials", "parse_credential"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class GitCredential:
    """A user name and secret for every repository on one origin (scheme, host, port)."""

    scheme: str
    host: str
    port: int
    username: str
    password: SecretStr

    def store_line(self) -> str:
        """This credential as a line of git's credential-store file."""
        netloc = self.host if self.port == _DEFAULT_PORTS[self.scheme] else f"{self.host}:{self.port}"
        if ":" in self.host:  # IPv6
            netloc = f"[{self.host}]" + ("" if self.port == _DEFAULT_PORTS[self.scheme] else f":{self.port}")
        user = quote(self.username, safe="")
        secret = quote(self.password.get_secret_value(), safe="")
        return f"{self.scheme}://{user}:{secret}@{netloc}"


def parse_credential(line: str) -> GitCredential:
    """`https://user:token@host[:port]` -> GitCredential; ValueError (without the secret) otherwise."""
    line = line.strip()
    origin = http_origin(line)
    parts = urlsplit(line)
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if origin else "an entry"
    if origin is None:
        raise ValueError(f"{shown} is not https://user:token@host[:port] (http or https)")
    if not parts.username or not parts.password:
        raise ValueError(f"{shown} needs a user name and a token: https://user:token@host")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"{shown}: credentials apply to a whole host; leave out the path")
    return GitCredential(
        *origin, username=unquote(parts.username), password=SecretStr(unquote(parts.password))
    )


def _token_credential(web_url: str, username: str, token: SecretStr | None) -> GitCredential | None:
    origin = http_origin(web_url)
    if token is None or not token.get_secret_value() or origin is None:
        return None
    return GitCredential(*origin, username=username, password=token)


class GitCredentials:
    """The configured credentials, looked up by a repository URL's origin (first entry wins)."""

    def __init__(self, credentials: Iterable[GitCredential] = ()) -> None:
        self._by_origin: dict[tuple[str, str, int], GitCredential] = {}
        for cred in credentials:
            self._by_origin.setdefault((cred.scheme, cred.host, cred.port), cred)

    @classmethod
    def from_config(
        cls,
        lines: Iterable[SecretStr],
        *,
        github_url: str,
        github_token: SecretStr | None,
        gitlab_url: str,
        gitlab_token: SecretStr | None,
    ) -> GitCredentials:
        """`git_credentials` first, then GitHub's and GitLab's tokens as git expects them."""
        creds = [parse_credential(line.get_secret_value()) for line in lines]
        for extra in (
            _token_credential(github_url, "x-access-token", github_token),
            _token_credential(gitlab_url, "oauth2", gitlab_token),
        ):
            if extra is not None:
                creds.append(extra)
        return cls(creds)

    def __bool__(self) -> bool:
        return bool(self._by_origin)

    def __len__(self) -> int:
        return len(self._by_origin)

    def for_url(self, url: str) -> GitCredential | None:
        """The credential for `url`'s exact origin, if one is configured."""
        origin = http_origin(url)
        return self._by_origin.get(origin) if origin else None

    def basic_auth(self, url: str) -> httpx.BasicAuth | None:
        cred = self.for_url(url)
        return None if cred is None else httpx.BasicAuth(cred.username, cred.password.get_secret_value())

    def store_text(self) -> str:
        """Every credential, one line each: the content of a `git credential-store` file."""
        return "".join(cred.store_line() + "\n" for cred in self._by_origin.values())

    def secrets(self) -> list[str]:
        """The secret values (for tests and scrubbing); never log these."""
        return [cred.password.get_secret_value() for cred in self._by_origin.values()]
