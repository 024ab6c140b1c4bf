"""All configuration, read once from the environment (``BINDER_SERVICE_*``) into one object."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_list(value: object) -> object:
    # "a,b c" from an environment variable; JSON lists and real lists pass through.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part for part in text.replace(",", " ").split() if part]
    return value


PROVIDERS = ("gh", "gl", "gist", "git")  # every provider there is, in the default detection order


class Settings(BaseSettings):
    """binder-service configuration. Every field is an environment variable ``BINDER_SERVICE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="BINDER_SERVICE_", extra="ignore")

    # --- where images go ---
    registry_url: str = Field(
        "",
        description="Registry to push to and look images up in, e.g. `http://127.0.0.1:5055`. "
        "Empty: images stay in the local Docker engine.",
    )
    image_prefix: str = Field(
        "binder-",
        description="Prefix of every image name. Without a registry host in it, the host of "
        "`registry_url` is put in front.",
    )
    docker_host: str = Field(
        "unix:///var/run/docker.sock",
        validation_alias=AliasChoices("BINDER_SERVICE_DOCKER_HOST", "DOCKER_HOST"),
        description="Docker engine repo2docker builds with (`DOCKER_HOST` is honoured).",
    )
    docker_config: Path | None = Field(
        None,
        description="docker `config.json` with registry credentials, used for lookups and passed to "
        "repo2docker for pushes. Default: `config.json` in `$DOCKER_CONFIG`, else in `~/.docker`, "
        "if it exists.",
    )
    docker_config_dir: Path | None = Field(
        None,
        validation_alias=AliasChoices("BINDER_SERVICE_DOCKER_CONFIG_DIR", "DOCKER_CONFIG"),
        description="The docker CLI's config directory (`DOCKER_CONFIG` is honoured).",
    )

    # --- builds ---
    max_concurrent_builds: int = Field(4, ge=1, description="Builds running at once; the rest queue.")
    build_timeout: float = Field(3600.0, gt=0, description="Seconds a build may run before it is stopped.")
    repo2docker_command: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["repo2docker"], description="How to run repo2docker."
    )
    repo2docker_extra_args: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra arguments for every repo2docker run (operator-set)."
    )
    build_history: int = Field(1000, ge=1, description="Finished builds kept for reading and replay.")
    max_events_per_build: int = Field(20000, ge=100, description="Log events kept per build.")

    # --- resolution ---
    allowed_git_protocols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http", "https", "git", "ssh"],
        description="URL schemes a git repository may use.",
    )
    allow_local_repos: bool = Field(False, description="Allow `file:` URLs and local paths (tests, demos).")
    max_input_length: int = Field(2048, ge=64, description="Longest spec, URL or ref accepted.")
    ref_cache_ttl: float = Field(
        0.0, ge=0, description="Seconds a resolved branch/tag is reused; 0: always ask the repository."
    )
    image_cache_ttl: float = Field(
        600.0, ge=0, description="Seconds an image found in the registry is remembered as existing."
    )

    not_found_cache_ttl: float = Field(
        30.0, ge=0, description="Seconds a repository or ref that a host's API did not find is remembered."
    )

    # --- repository providers ---
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(PROVIDERS),
        description="Enabled repository providers, in the order URL detection tries them: "
        "`gh` (GitHub), `gl` (GitLab), `gist` (GitHub gists), `git` (any git URL).",
    )
    github_url: str = Field("https://github.com", description="GitHub's web address (Enterprise: yours).")
    github_api_url: str = Field(
        "https://api.github.com",
        description="GitHub's REST API (Enterprise: `https://<host>/api/v3`); used by `gh` and `gist`.",
    )
    github_token: SecretStr | None = Field(
        None,
        description="Token sent to the GitHub API as a bearer token: a higher rate limit, private repos.",
    )
    gist_url: str = Field("https://gist.github.com", description="Where gists are cloned from.")
    allow_secret_gists: bool = Field(False, description="Build secret (unlisted) gists too.")
    gitlab_url: str = Field("https://gitlab.com", description="The GitLab instance `gl` resolves through.")
    gitlab_token: SecretStr | None = Field(
        None, description="Token sent to the GitLab API as `PRIVATE-TOKEN`: private projects."
    )

    # --- timeouts (seconds) for every network call ---
    resolve_timeout: float = Field(10.0, gt=0, description="Resolving a ref with the repository host.")
    registry_timeout: float = Field(10.0, gt=0, description="One request to the registry.")
    docker_timeout: float = Field(10.0, gt=0, description="One request to the Docker engine API.")
    keepalive_interval: float = Field(15.0, gt=0, description="Seconds between `:keepalive` comments.")

    # --- serving ---
    host: str = Field("127.0.0.1", description="Interface `binder-service serve` listens on.")
    port: int = Field(8585, ge=0, le=65535, description="Port `binder-service serve` listens on.")
    base_url: str = Field(
        "/", description="Path prefix the service is served under, e.g. `/services/binder/`."
    )
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Static bearer tokens; when set, every build API call needs one of them (health, "
        "versions, metrics and provider listings stay open). Required when listening beyond loopback.",
    )

    @field_validator(
        "repo2docker_command",
        "repo2docker_extra_args",
        "allowed_git_protocols",
        "api_tokens",
        "providers",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("base_url")
    @classmethod
    def _slashes(cls, value: str) -> str:
        return "/" + value.strip("/") + "/" if value.strip("/") else "/"

    @field_validator("registry_url")
    @classmethod
    def _registry_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("registry_url must start with http:// or https://")
        return value

    @field_validator("allowed_git_protocols")
    @classmethod
    def _protocols(cls, value: list[str]) -> list[str]:
        unsafe = {p for p in value if p not in {"http", "https", "git", "ssh"}}
        if unsafe:
            raise ValueError(f"unsupported git protocols: {sorted(unsafe)} (allowed: http, https, git, ssh)")
        return value

    @field_validator("providers")
    @classmethod
    def _providers(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in PROVIDERS]
        if unknown:
            raise ValueError(f"unknown providers: {unknown} (known: {', '.join(PROVIDERS)})")
        if not value:
            raise ValueError("at least one provider must be enabled")
        return list(dict.fromkeys(value))  # a repeated name is still one provider

    @field_validator("github_url", "github_api_url", "gist_url", "gitlab_url")
    @classmethod
    def _web_urls(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if "@" in value.split("/", 3)[2]:
            raise ValueError("must not hold credentials (use the token settings)")
        return value

    def resolved_docker_config(self) -> Path | None:
        """The docker config.json to use: the setting, else where the docker CLI would look."""
        if self.docker_config is not None:
            return self.docker_config
        base = self.docker_config_dir or Path.home() / ".docker"
        path = base / "config.json"
        return path if path.exists() else None
