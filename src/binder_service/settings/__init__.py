"""All configuration, read once from the environment (``BINDER_SERVICE_*``) into one object.

The fields are declared by concern in this package's modules (builds, sources, kubernetes, serving) and
combined here, in that declaration order (the generated docs table and the chart schema follow it);
the rules across concerns are the model validators below."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..units import is_loopback, parse_size
from .builds import BuildSettings
from .kubernetes import KubernetesSettings
from .serving import ServingSettings
from .sources import SourceSettings
from .values import IPNetwork, UnsafeSettings, describe_invalid, parse_duration

__all__ = [
    "NOT_SETTINGS",
    "IPNetwork",
    "Settings",
    "UnsafeSettings",
    "describe_invalid",
    "is_loopback",
    "parse_duration",
    "setting_variables",
    "unknown_variables",
]


class Settings(BaseSettings, ServingSettings, KubernetesSettings, SourceSettings, BuildSettings):
    """binder-service configuration. Every field is an environment variable ``BINDER_SERVICE_<NAME>``."""

    # populate_by_name: fields with environment aliases (DOCKER_HOST, JUPYTERHUB_*) can still be set by name.
    model_config = SettingsConfigDict(env_prefix="BINDER_SERVICE_", extra="ignore", populate_by_name=True)

    @model_validator(mode="after")
    def _usable_db_url(self) -> Settings:
        # Here (a rule of the model, not of the field), so pydantic never prints the URL: it holds a password.
        if self.db_url is not None and self.db_url.get_secret_value():
            from ..db_url import store_url

            try:
                store_url(self.db_url.get_secret_value())
            except ValueError as e:
                raise ValueError(f"BINDER_SERVICE_DB_URL: {e}") from None
        return self

    @model_validator(mode="after")
    def _kubernetes_needs(self) -> Settings:
        if self.executor == "kubernetes" and not self.registry_url:
            raise ValueError("executor 'kubernetes' needs registry_url: build pods push there")
        if self.engine == "buildah" and not self.registry_url:
            # buildah keeps no image store that outlives a build (docs/security.md): the registry is it.
            raise ValueError("engine 'buildah' needs registry_url: its builds push there")
        if self.build_user and (self.engine != "buildah" or self.executor != "local"):
            raise ValueError("build_user is for engine 'buildah' with the local executor")
        limited = self.build_memory_limit or self.build_cpu_limit
        if limited and self.engine == "buildah" and self.executor == "local":
            from ..builds.cgroups import Limits, unavailable_reason

            # Each build runs in a cgroup of its own holding the limits (builds/cgroups.py): refused here,
            # at start, where none can be made.
            memory = parse_size(self.build_memory_limit) if self.build_memory_limit else None
            reason = unavailable_reason(Limits(memory=memory, cpus=self.build_cpu_limit))
            if reason is not None:
                raise ValueError(
                    "build_memory_limit and build_cpu_limit put each build in a cgroup of its own, and "
                    f"none can be made here: {reason}"
                )
        if self.k8s_sticky_builds and self.engine == "buildah":
            raise ValueError(
                "k8s_sticky_builds is for engine 'docker' (it prefers the docker-api node holding a "
                "repository's layers); buildah's build pods reuse layers from the registry cache"
            )
        if self.k8s_sticky_builds and not self.k8s_docker_api_selector:
            raise ValueError("k8s_sticky_builds needs k8s_docker_api_selector (the docker-api pods' labels)")
        return self

    @model_validator(mode="after")
    def _listen_where_the_hub_expects(self) -> Settings:
        # A managed JupyterHub service is told its URL; listen there unless host/port were set.
        if self.service_url:
            parts = urlsplit(self.service_url)
            if "host" not in self.model_fields_set and parts.hostname:
                self.host = parts.hostname
            if "port" not in self.model_fields_set and parts.port:
                self.port = parts.port
        return self

    @model_validator(mode="after")
    def _safe_to_run(self) -> Settings:
        # After _listen_where_the_hub_expects (model validators run in the order they are defined).
        from ..images.naming import qualified_prefix, validate_prefix

        validate_prefix(qualified_prefix(self.image_prefix, self.registry_url))
        if self.docker_config is not None and not self.docker_config.is_file():
            raise ValueError(f"docker config {self.docker_config} does not exist")
        if not is_loopback(self.host) and not self.api_tokens and not self.hub_enabled:
            raise UnsafeSettings(
                f"refusing to listen on {self.host} without authentication; set "
                "BINDER_SERVICE_API_TOKENS, run it as a JupyterHub service, or listen on 127.0.0.1"
            )
        return self

    # The environment these settings were read from: what repo2docker, git and ssh are given
    # (filtered by child_env) and where the Kubernetes client finds its cluster. Set by the CLI or a test.
    _environ: dict[str, str] = PrivateAttr(default_factory=lambda: dict(os.environ))

    @property
    def environ(self) -> Mapping[str, str]:
        """The process environment at the time these settings were read."""
        return self._environ

    @property
    def hub_enabled(self) -> bool:
        """Hub mode: users are JupyterHub users, identified by the hub."""
        return bool(self.hub_api_url and self.hub_api_token and self.hub_api_token.get_secret_value())

    def effective_build_scopes(self) -> frozenset[str]:
        if self.hub_build_scopes:
            return frozenset(self.hub_build_scopes)
        name = self.hub_service_name
        defaults = {f"access:services!service={name}", "access:services", "custom:binder:build"}
        return frozenset(defaults | set(self.hub_admin_scopes))

    def resolved_state_dir(self) -> Path:
        return self.state_dir or Path.home() / ".local" / "share" / "binder-service"

    def resolved_db_url(self) -> str:
        """The build store's URL (it may hold a password: never log it as it is)."""
        if self.db_url is not None and self.db_url.get_secret_value():
            return self.db_url.get_secret_value()
        return f"sqlite:///{self.resolved_state_dir() / 'binder-service.sqlite'}"

    def resolved_docker_config(self) -> Path | None:
        """The docker config.json to use: the setting, else where the docker CLI would look."""
        if self.docker_config is not None:
            return self.docker_config
        base = self.docker_config_dir or Path.home() / ".docker"
        path = base / "config.json"
        return path if path.exists() else None


# Variables with the prefix that are read, but are no setting: `binder-service build`'s token.
NOT_SETTINGS = frozenset({"BINDER_SERVICE_TOKEN"})


def setting_variables() -> list[str]:
    """Every `BINDER_SERVICE_*` variable that sets a setting (upper case: names are not case-sensitive)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names: list[str] = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [f"{prefix}{name}"]
        names += [c.upper() for c in choices if isinstance(c, str) and c.upper().startswith(prefix)]
    return names


def _words(name: str) -> set[str]:
    return {word.removesuffix("S") for word in name.split("_")}


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each `BINDER_SERVICE_*` variable in `environ` that names no setting (pydantic-settings
    ignores those), with the closest setting's variable: a misspelling must not pass in silence."""
    import difflib

    prefix = "BINDER_SERVICE_"
    known = {v.removeprefix(prefix): v for v in setting_variables()}
    warnings = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(prefix) or upper in NOT_SETTINGS or upper.removeprefix(prefix) in known:
            continue
        name = upper.removeprefix(prefix)
        # Among names spelled alike, the one sharing the most words (plurals alike): HUB_TOKEN ->
        # HUB_API_TOKEN, not GITHUB_TOKEN; ties keep difflib's order (API_TOKEN -> API_TOKENS).
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        close.sort(key=lambda c: len(_words(name) & _words(c)), reverse=True)
        hint = f"did you mean {known[close[0]]}?" if close else "no setting has a name like it"
        warnings.append(f"{variable} is not a setting and is ignored; {hint}")
    return warnings
