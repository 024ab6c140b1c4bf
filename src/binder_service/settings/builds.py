"""Settings of images, builds, the build store, caches and disks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from ..units import parse_size
from .values import Words, parse_duration


@dataclass(frozen=True, slots=True)
class Amounts:
    """The sizes and durations of the build settings as numbers, converted once when the settings load
    (the fields keep what the operator wrote: the chart schema and the docs show those)."""

    build_retention_seconds: float  # 0: forever
    registry_retention_seconds: float | None  # None: no registry garbage collection
    engine_disk_budget_bytes: int | None  # None: no budget
    build_memory_limit_bytes: int | None  # None: no limit


class BuildSettings(BaseModel):
    """Settings of images, builds, the build store, caches and disks."""

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
    engine: Literal["docker", "buildah"] = Field(
        "docker",
        description="What builds images: `docker` (repo2docker drives a Docker engine through buildx) or "
        "`buildah` (daemonless: repo2docker drives buildah in the build's own process, with our engine "
        "plugin; needs `registry_url`). docs/security.md compares them.",
    )
    build_memory_limit: str = Field(
        "",
        description="Memory (swap included) a build may use, a size such as `2GB` or `512MiB`: engine "
        "`buildah` runs each build in a cgroup of its own holding repo2docker, buildah and every `RUN` step "
        "(a small build takes about 65 MiB by itself); going over it fails the build with "
        "`build_out_of_memory`. Needs root on cgroup v1, or a delegated cgroup on v2 (refused at start "
        "otherwise); with engine `docker` the steps run in the daemon and escape it (a warning at start). "
        "Empty: no limit.",
    )
    build_user: str = Field(
        "",
        description="Engine `buildah`, service running as root: run buildah as this unprivileged user, "
        "rootless (its own user namespace; RUN steps in a chroot inside it), its storage in the user's "
        "home directory; the build's cgroup (`build_memory_limit`) still holds it. The user needs ranges "
        "in `/etc/subuid` and `/etc/subgid` (`scripts/install-system.sh --build-user NAME` makes one). "
        "Empty: buildah runs as root, RUN steps under runc.",
    )
    build_cpu_limit: float = Field(
        0.0,
        ge=0,
        description="CPUs a build may use (`1.5`: one and a half), in the build's cgroup as "
        "`build_memory_limit`. 0: no limit.",
    )
    max_concurrent_builds: int = Field(4, ge=1, description="Builds running at once; the rest queue.")
    build_timeout: float = Field(3600.0, gt=0, description="Seconds a build may run before it is stopped.")
    repo2docker_command: Words = Field(
        default_factory=lambda: ["repo2docker"], description="How to run repo2docker."
    )
    repo2docker_extra_args: Words = Field(
        default_factory=list, description="Extra arguments for every repo2docker run (operator-set)."
    )
    build_history: int = Field(1000, ge=1, description="Finished builds kept for reading and replay.")
    max_events_per_build: int = Field(20000, ge=100, description="Log events kept per build.")

    # --- state: the build store (docs/state.md) ---
    state_dir: Path | None = Field(
        None,
        description="Directory of the service's state: the SQLite build store and the build logs. "
        "Default: `~/.local/share/binder-service`.",
    )
    db_url: SecretStr | None = Field(
        None,
        description="The build store's database URL. Default: a SQLite file, "
        "`sqlite:///<state_dir>/binder-service.sqlite`. Several replicas share one history in "
        "PostgreSQL: `postgresql://user:password@host/db` or `postgres://…`, libpq options such as "
        "`?sslmode=require` included (the `postgres` extra). Docs: state.",
    )
    db_timeout: float = Field(10.0, gt=0, description="Seconds for one database operation.")
    build_lease: float = Field(
        30.0,
        gt=0,
        description="Seconds a replica's claim on a running build lasts unless renewed (PostgreSQL, local "
        "builds): a replica silent this long is taken for dead and its builds end `failed`.",
    )
    build_retention: str = Field(
        "7d",
        description="How long finished builds, their events and logs are kept: a number with a unit "
        "(`s`, `m`, `h`, `d`, `w`), e.g. `7d`; `0` keeps them forever.",
    )

    # --- caches and disks (docs/cache-and-disk.md) ---
    layer_cache: bool = Field(
        True,
        description="Every build exports inline layer cache with its image and imports the cache of the "
        "repository's latest image in the registry, so any engine rebuilds a new commit from unchanged "
        "layers.",
    )
    engine_disk_budget: str = Field(
        "",
        description="Disk the Docker engine's images and build cache may use, e.g. `400MB` or `50GB`: after "
        "each build and every `engine_prune_interval` seconds they are pruned oldest-use first until under "
        "it. Empty: no budget.",
    )
    engine_pinned_images: Words = Field(
        default_factory=list,
        description="Images the engine budget never removes (base images), as `name:tag`, or `name` for "
        "every tag of it.",
    )
    engine_prune_interval: float = Field(
        300.0, gt=0, description="Seconds between checks of the engine disk budget."
    )
    registry_retention: str = Field(
        "",
        description="`binder-service gc` deletes images this service built that nobody requested for this "
        "long (`90s`, `12h`, `30d`). Empty: registry garbage collection is off.",
    )
    registry_gc_interval: float = Field(
        0.0, ge=0, description="Seconds between garbage collections of the registry by the service; 0: none."
    )

    @field_validator("registry_url")
    @classmethod
    def _registry_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("registry_url must start with http:// or https://")
        return value

    @field_validator("build_retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        parse_duration(value)  # ValueError with the accepted forms
        return value.strip()

    @field_validator("engine_disk_budget")
    @classmethod
    def _disk_budget(cls, value: str) -> str:
        if value.strip():
            parse_size(value)  # ValueError with the accepted forms
        return value.strip()

    @field_validator("build_memory_limit")
    @classmethod
    def _memory_limit(cls, value: str) -> str:
        if value.strip() and parse_size(value) < 6 * 2**20:
            raise ValueError("build_memory_limit must be at least 6MiB (runc's minimum), or empty")
        return value.strip()

    @field_validator("registry_retention")
    @classmethod
    def _registry_retention(cls, value: str) -> str:
        if value.strip() and parse_duration(value) <= 0:
            raise ValueError("registry_retention must be a positive duration such as 30d (empty: off)")
        return value.strip()

    _amounts: Amounts | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _convert(self) -> Self:
        self._amounts = Amounts(
            build_retention_seconds=parse_duration(self.build_retention),
            registry_retention_seconds=parse_duration(self.registry_retention)
            if self.registry_retention
            else None,
            engine_disk_budget_bytes=parse_size(self.engine_disk_budget) if self.engine_disk_budget else None,
            build_memory_limit_bytes=parse_size(self.build_memory_limit) if self.build_memory_limit else None,
        )
        return self

    @property
    def amounts(self) -> Amounts:
        """The sizes and durations above as numbers (converted when the settings loaded)."""
        assert self._amounts is not None  # set by the model validator
        return self._amounts
