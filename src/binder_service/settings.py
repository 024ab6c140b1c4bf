"""All configuration, read once from the environment (``BINDER_SERVICE_*``) into one object."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    InstanceOf,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import __version__
from .policy import SpecRule, compile_patterns, parse_spec_config
from .provider_order import PROVIDER_ORDER


def _split_list(value: object) -> object:
    # "a,b c" from an environment variable; JSON lists and real lists pass through.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part for part in text.replace(",", " ").split() if part]
    return value


def _split_policy_list(value: object) -> object:
    if isinstance(value, str) and not value.strip().startswith("["):
        return value.split()  # regexes and credentials may hold commas: split on whitespace only
    return _split_list(value)


_ORIGIN = re.compile(r"https?://[^/\s?#@]+")  # an origin as browsers send it: no path, no user

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """`7d`, `12h`, `90m`, `30s`, `2w` or plain seconds -> seconds; `0` means forever."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], 0) if value else 0
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h, 90m or 30s") from None
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{text!r} must be 0 (forever) or a positive duration")
    return seconds


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UnsafeSettings(ValueError):
    """A combination of settings the service refuses to run with (the CLI shows it as it is)."""


def describe_invalid(error: ValidationError) -> str:
    """A ValidationError of Settings as the CLI prints it. A refusal (`UnsafeSettings`) is one line that
    says what to do; a rule across fields is its message alone (pydantic would show the input, whose
    secrets a truncated repr may still reveal); a bad field is pydantic's list of what is wrong."""
    whole = [e.get("ctx", {}).get("error") or e["msg"] for e in error.errors() if not e["loc"]]
    unsafe = [str(e) for e in whole if isinstance(e, UnsafeSettings)]
    if unsafe:
        return unsafe[0]
    if whole:
        return "invalid configuration: " + "; ".join(str(e) for e in whole)
    return f"invalid configuration:\n{error}"


# Parsed fields keep their typed values; their schema (the chart's values.schema.json) stays what is set.
_STRINGS = WithJsonSchema({"items": {"type": "string"}, "type": "array"})
_OBJECTS = WithJsonSchema({"items": {"additionalProperties": True, "type": "object"}, "type": "array"})
IPNetwork = IPv4Network | IPv6Network


# A Localhost seccomp profile: a relative path under the kubelet's seccomp directory.
_PROFILE_NAME = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_APPARMOR_NAME = re.compile(r"[A-Za-z0-9._-]+")
# A Kubernetes quantity for a size (emptyDir sizeLimit): 20Gi, 500M, 1e9.
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE]|e[0-9]+)?")


class Settings(BaseSettings):
    """binder-service configuration. Every field is an environment variable ``BINDER_SERVICE_<NAME>``."""

    # populate_by_name: fields with environment aliases (DOCKER_HOST, JUPYTERHUB_*) can still be set by name.
    model_config = SettingsConfigDict(env_prefix="BINDER_SERVICE_", extra="ignore", populate_by_name=True)

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
        description="Memory (swap included) each `RUN` step of a build may use, a size such as `2GB` or "
        "`512MiB`; a step over it fails the build with `build_out_of_memory`. Engine `buildah` as root "
        "(runc's cgroup per step); with engine `docker` the steps run in the daemon and escape it (a "
        "warning at start). Empty: no limit.",
    )
    build_user: str = Field(
        "",
        description="Engine `buildah`, service running as root: run buildah as this unprivileged user, "
        "rootless (its own user namespace; RUN steps in a chroot inside it), its storage in the user's "
        "home directory. The user needs ranges in `/etc/subuid` and `/etc/subgid` "
        "(`scripts/install-system.sh --build-user NAME` makes one). Empty: buildah runs as root, RUN steps "
        "under runc.",
    )
    build_cpu_limit: float = Field(
        0.0,
        ge=0,
        description="CPUs each `RUN` step of a build may use (`1.5`: one and a half). Engine `buildah` as "
        "root, as `build_memory_limit`. 0: no limit.",
    )
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
    engine_pinned_images: Annotated[list[str], NoDecode] = Field(
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
        default_factory=lambda: list(PROVIDER_ORDER),
        description="Enabled repository providers, in the order URL detection tries them: "
        "`gh` (GitHub), `gl` (GitLab), `gist` (GitHub gists), `zenodo`, `figshare`, `hydroshare`, "
        "`dataverse`, `ckan` (datasets, docs/providers.md), `git` (any git URL).",
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
    git_credentials: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Credentials for private git repositories, one per host as git's credential store "
        "writes them: `https://user:token@host[:port]` (JSON list, or separated by spaces). Used to resolve "
        "refs over HTTP(S) and given to repo2docker's git in a private credential file. `github_token` and "
        "`gitlab_token` are added for their hosts.",
    )

    # --- dataset providers ---
    doi_resolver_url: str = Field(
        "https://doi.org", description="DOI resolver the dataset providers follow DOIs through (hop by hop)."
    )
    doi_cache_ttl: float = Field(
        3600.0, ge=0, description="Seconds the URL a DOI is registered to is remembered."
    )
    zenodo_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["https://zenodo.org", "https://sandbox.zenodo.org"],
        description="Zenodo (InvenioRDM) sites `zenodo` resolves records on; the API is `<site>/api`.",
    )
    zenodo_doi_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["10.5281"],
        description="DOI prefixes the native API hands to `zenodo` without being told the provider.",
    )
    figshare_url: str = Field("https://figshare.com", description="Figshare's web address (`figshare`).")
    figshare_api_url: str = Field("https://api.figshare.com/v2", description="Figshare's public API v2.")
    hydroshare_url: str = Field(
        "https://www.hydroshare.org", description="HydroShare's web address; its API is `<url>/hsapi`."
    )
    dataverse_installations: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["https://dataverse.harvard.edu"],
        description="Dataverse installations `dataverse` resolves datasets on (and repo2docker may fetch "
        "from), as URLs.",
    )
    dataverse_doi_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["10.7910"],
        description="DOI prefixes the native API hands to `dataverse` without being told the provider.",
    )
    ckan_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts (`host` or `host:port`) `ckan` may resolve datasets on; empty: any host "
        "(egress rules still apply). The native API detects CKAN URLs only on these hosts.",
    )

    # --- egress and spec policy (docs/security.md) ---
    allow_private_networks: bool = Field(
        False,
        description="Let repository URLs reach loopback, private, link-local and other non-public "
        "addresses (tests, demos, on-premises hosts). Off: such destinations are refused, after DNS and "
        "on every redirect.",
    )
    allowed_networks: Annotated[list[IPNetwork], NoDecode, _STRINGS] = Field(
        default_factory=list,
        description="Non-public networks repository hosts may still be on (CIDRs, e.g. `10.20.0.0/16` for an "
        "on-premises GitLab).",
    )
    banned_specs: Annotated[list[re.Pattern[str]], NoDecode, _STRINGS] = Field(
        default_factory=list,
        description="Case-insensitive regexes of repositories that may not be built, searched in "
        "`<provider>/<repository>` (e.g. `^gh/evil-org/`). JSON list, or separated by spaces.",
    )
    banned_specs_message: str = Field(
        "", description="Shown to the user when a repository is banned (or not on `allowed_specs`)."
    )
    allowed_specs: Annotated[list[re.Pattern[str]], NoDecode, _STRINGS] = Field(
        default_factory=list,
        description="When set, only repositories matching one of these regexes may be built (same form as "
        "`banned_specs`).",
    )
    spec_config: Annotated[list[InstanceOf[SpecRule]], _OBJECTS] = Field(
        default_factory=list,
        description='Per-repository options (JSON), the first matching pattern wins: `[{"pattern": '
        '"^gh/big-org/", "quota": 5}]`; `quota` is the most builds of matching repositories at once.',
    )

    # --- kubernetes executor ---
    executor: Literal["local", "kubernetes"] = Field(
        "local",
        description="What runs builds: `local` (repo2docker as a process here) or `kubernetes` (a build pod "
        "per image; needs `registry_url`).",
    )
    k8s_namespace: str = Field(
        "",
        description="Namespace of build pods. Empty: the service's own namespace when it runs in a pod, "
        "else `default`.",
    )
    k8s_build_image: str = Field(
        "quay.io/jupyterhub/repo2docker:2026.4.0", description="The repo2docker image build pods run."
    )
    k8s_docker_socket: str = Field(
        "/var/run/docker.sock",
        description="Host path of the docker-api DaemonSet's socket, mounted into build pods (hostPath, "
        "type Socket).",
    )
    k8s_push_secret: str = Field(
        "",
        description="Secret with key `config.json` (docker config with registry credentials) mounted into "
        "build pods as `$DOCKER_CONFIG/config.json`. Empty: push without credentials.",
    )
    k8s_git_credentials_secret: str = Field(
        "",
        description="Secret with key `credentials` (git credential lines, `https://user:token@host`) given "
        "to repo2docker in build pods as `GIT_CREDENTIAL_ENV`.",
    )
    k8s_node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector of build pods (JSON), e.g. docker-api nodes."
    )
    k8s_tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="Tolerations of build pods (JSON list)."
    )
    k8s_affinity: dict[str, Any] = Field(default_factory=dict, description="Affinity of build pods (JSON).")
    k8s_build_resources: dict[str, Any] = Field(
        default_factory=dict,
        description='Resources of the build container (JSON), e.g. `{"requests": {"memory": "1Gi"}, '
        '"limits": {"memory": "4Gi"}}`.',
    )
    k8s_api_timeout: float = Field(10.0, gt=0, description="Seconds for every Kubernetes API call.")
    k8s_reap_interval: float = Field(
        60.0, gt=0, description="Seconds between sweeps that delete finished and over-age build pods."
    )
    k8s_pod_max_age: float = Field(
        0.0,
        ge=0,
        description="Build pods older than this are deleted by the sweep; 0: `build_timeout` + 300.",
    )
    k8s_sticky_builds: bool = Field(
        False,
        description="Prefer the node that last built the same repository (its layer cache), chosen by "
        "rendezvous hashing over the nodes of the docker-api pods.",
    )
    k8s_docker_api_selector: str = Field(
        "",
        description="Label selector of the docker-api DaemonSet's pods in `k8s_namespace`; their nodes are "
        "the candidates for sticky builds (required by `k8s_sticky_builds`).",
    )
    k8s_build_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on build pods (JSON); the sweep only touches pods that carry them.",
    )
    k8s_builder_image: str = Field(
        f"binder-service-builder:{__version__}",
        description="The image build pods run with engine `buildah`: repo2docker, buildah and this "
        "package's engine, as uid 1000 (`scripts/release.sh` builds it: `<prefix>/binder-service-builder`).",
    )
    k8s_seccomp_profile: str = Field(
        "binder-service-buildah.json",
        description="Seccomp profile of buildah build pods: a file in the kubelet's seccomp directory "
        "(`Localhost`, e.g. `/var/lib/kubelet/seccomp/binder-service-buildah.json`; docs: kubernetes), "
        "or `RuntimeDefault` where the runtime's default profile lets buildah make user namespaces "
        "(CRI-O's does; containerd's does not).",
    )
    k8s_apparmor_profile: str = Field(
        "",
        description="AppArmor profile of buildah build pods, on nodes with AppArmor: the name of a profile "
        "loaded on them (set as `localhost/<name>`; docs: kubernetes). Empty: the runtime's default, "
        "which denies the mounts buildah makes in its user namespace. `unconfined` is refused (baseline).",
    )
    k8s_build_storage_limit: str = Field(
        "20Gi",
        description="Size limit of the emptyDir buildah build pods keep image layers and the repository in "
        "(a Kubernetes quantity); a pod that writes more is evicted.",
    )

    # --- timeouts (seconds) for every network call ---
    resolve_timeout: float = Field(10.0, gt=0, description="Resolving a ref with the repository host.")
    registry_timeout: float = Field(10.0, gt=0, description="One request to the registry.")
    docker_timeout: float = Field(10.0, gt=0, description="One request to the Docker engine API.")
    keepalive_interval: float = Field(15.0, gt=0, description="Seconds between `:keepalive` comments.")
    send_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a client may stop reading a stream before its connection is aborted "
        "(the build and every other client go on).",
    )
    shutdown_grace: float = Field(
        5.0,
        ge=0,
        description="On a graceful stop, seconds every stream has to send its last event before it is cut.",
    )

    # --- serving ---
    host: str = Field("127.0.0.1", description="Interface `binder-service serve` listens on.")
    port: int = Field(8585, ge=0, le=65535, description="Port `binder-service serve` listens on.")
    base_url: str = Field(
        "/",
        validation_alias=AliasChoices("BINDER_SERVICE_BASE_URL", "JUPYTERHUB_SERVICE_PREFIX"),
        description="Path prefix the service is served under, e.g. `/services/binder/` "
        "(`JUPYTERHUB_SERVICE_PREFIX` is honoured).",
    )
    service_url: str = Field(
        "",
        validation_alias=AliasChoices("BINDER_SERVICE_SERVICE_URL", "JUPYTERHUB_SERVICE_URL"),
        description="Where JupyterHub expects this service (`JUPYTERHUB_SERVICE_URL`); its host and port are "
        "listened on unless `host`/`port` are set.",
    )

    # --- JupyterHub (set by the hub for its services; hub mode is on when the API URL and token are set) ---
    hub_api_url: str = Field(
        "",
        validation_alias=AliasChoices("BINDER_SERVICE_HUB_API_URL", "JUPYTERHUB_API_URL"),
        description="JupyterHub's API, e.g. `http://127.0.0.1:8081/hub/api` (`JUPYTERHUB_API_URL`).",
    )
    hub_api_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("BINDER_SERVICE_HUB_API_TOKEN", "JUPYTERHUB_API_TOKEN"),
        description="This service's JupyterHub token (`JUPYTERHUB_API_TOKEN`); also its OAuth client secret.",
    )
    hub_service_name: str = Field(
        "binder",
        validation_alias=AliasChoices("BINDER_SERVICE_HUB_SERVICE_NAME", "JUPYTERHUB_SERVICE_NAME"),
        description="This service's name in JupyterHub (`JUPYTERHUB_SERVICE_NAME`).",
    )
    hub_client_id: str = Field(
        "",
        validation_alias=AliasChoices("BINDER_SERVICE_HUB_CLIENT_ID", "JUPYTERHUB_CLIENT_ID"),
        description="OAuth client id (`JUPYTERHUB_CLIENT_ID`); default `service-<name>`.",
    )
    hub_oauth_callback_url: str = Field(
        "",
        validation_alias=AliasChoices(
            "BINDER_SERVICE_HUB_OAUTH_CALLBACK_URL", "JUPYTERHUB_OAUTH_CALLBACK_URL"
        ),
        description="OAuth redirect URI (`JUPYTERHUB_OAUTH_CALLBACK_URL`); "
        "default `<base_url>oauth_callback`.",
    )
    hub_base_url: str = Field(
        "/",
        validation_alias=AliasChoices("BINDER_SERVICE_HUB_BASE_URL", "JUPYTERHUB_BASE_URL"),
        description="JupyterHub's base URL (`JUPYTERHUB_BASE_URL`): browsers are sent to "
        "`<hub_host><hub_base_url>hub/api/oauth2/authorize` to log in.",
    )
    hub_host: str = Field(
        "",
        validation_alias=AliasChoices("BINDER_SERVICE_HUB_HOST", "JUPYTERHUB_HOST"),
        description="JupyterHub's public origin when it differs from this service's (`JUPYTERHUB_HOST`).",
    )
    hub_build_scopes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Scopes that allow building (any one is enough). Default: "
        "`access:services!service=<name>`, `access:services`, `custom:binder:build`, `custom:binder:admin`. "
        "Set `custom:binder:build` to require the build scope.",
    )
    hub_admin_scopes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["custom:binder:admin"],
        description="Scopes that see and cancel every build (others see only their own).",
    )
    hub_auth_cache_ttl: float = Field(
        60.0, ge=0, description="Seconds a token's identity from JupyterHub is reused (keyed by a hash)."
    )
    hub_timeout: float = Field(5.0, gt=0, description="One request to JupyterHub's API.")

    # --- per-user limits (0: none) ---
    max_builds_per_user: int = Field(
        0, ge=0, description="Builds one user may have queued or running at once; 0: no limit."
    )
    max_requests_per_minute: int = Field(
        0, ge=0, description="Build requests one user may make per minute; 0: no limit."
    )
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Static bearer tokens; when set, every build API call needs one of them (health, "
        "versions, metrics and provider listings stay open). Required when listening beyond loopback.",
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Web origins (`https://host[:port]`, or `*` for any) whose pages may call the API "
        "from the browser (CORS), with a token in `Authorization`; cookies are never accepted "
        "cross-origin. Empty: no CORS headers.",
    )

    @field_validator(
        "repo2docker_command",
        "repo2docker_extra_args",
        "allowed_git_protocols",
        "api_tokens",
        "cors_allow_origins",
        "providers",
        "zenodo_urls",
        "zenodo_doi_prefixes",
        "dataverse_installations",
        "dataverse_doi_prefixes",
        "ckan_hosts",
        "hub_build_scopes",
        "hub_admin_scopes",
        "engine_pinned_images",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        origins = [v.rstrip("/") for v in value]
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not a web origin like https://example.org[:port] (or *)")
        return origins

    @field_validator("git_credentials", mode="before")
    @classmethod
    def _policy_lists(cls, value: object) -> object:
        return _split_policy_list(value)

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        from .units import parse_networks

        value = _split_policy_list(value)
        if isinstance(value, list):
            return [v if not isinstance(v, str) else parse_networks([v])[0] for v in value]
        return value

    @field_validator("banned_specs", "allowed_specs", mode="before")
    @classmethod
    def _patterns(cls, value: object, info: ValidationInfo) -> object:
        # case-insensitive, as the policy matches them; ValueError naming the bad one
        value = _split_policy_list(value)
        if isinstance(value, list):
            return [
                v if isinstance(v, re.Pattern) else compile_patterns([v], info.field_name or "pattern")[0]
                for v in value
            ]
        return value

    @field_validator("spec_config", mode="before")
    @classmethod
    def _spec_config(cls, value: object) -> object:
        if isinstance(value, list) and not all(isinstance(v, SpecRule) for v in value):
            return parse_spec_config(value)
        return value

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
        known = PROVIDER_ORDER
        unknown = [p for p in value if p not in known]
        if unknown:
            raise ValueError(f"unknown providers: {unknown} (known: {', '.join(known)})")
        if not value:
            raise ValueError("at least one provider must be enabled")
        return list(dict.fromkeys(value))  # a repeated name is still one provider

    @field_validator("zenodo_urls", "dataverse_installations")
    @classmethod
    def _web_url_lists(cls, value: list[str]) -> list[str]:
        return [cls._web_urls(v) for v in value]

    @field_validator(
        "github_url",
        "github_api_url",
        "gist_url",
        "gitlab_url",
        "doi_resolver_url",
        "figshare_url",
        "figshare_api_url",
        "hydroshare_url",
    )
    @classmethod
    def _web_urls(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if "@" in value.split("/", 3)[2]:
            raise ValueError("must not hold credentials (use the token settings)")
        return value

    @field_validator("build_retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        parse_duration(value)  # ValueError with the accepted forms
        return value.strip()

    @field_validator("engine_disk_budget")
    @classmethod
    def _disk_budget(cls, value: str) -> str:
        from .units import parse_size

        if value.strip():
            parse_size(value)  # ValueError with the accepted forms
        return value.strip()

    @field_validator("build_memory_limit")
    @classmethod
    def _memory_limit(cls, value: str) -> str:
        from .units import parse_size

        if value.strip() and parse_size(value) < 6 * 2**20:
            raise ValueError("build_memory_limit must be at least 6MiB (runc's minimum), or empty")
        return value.strip()

    @field_validator("registry_retention")
    @classmethod
    def _registry_retention(cls, value: str) -> str:
        if value.strip() and parse_duration(value) <= 0:
            raise ValueError("registry_retention must be a positive duration such as 30d (empty: off)")
        return value.strip()

    @field_validator("k8s_seccomp_profile")
    @classmethod
    def _seccomp_profile(cls, value: str) -> str:
        if value == "RuntimeDefault":
            return value
        if value.lower() == "unconfined":
            raise ValueError("k8s_seccomp_profile: Unconfined is not allowed (baseline forbids it)")
        if not _PROFILE_NAME.fullmatch(value) or ".." in value.split("/"):
            raise ValueError(
                "k8s_seccomp_profile must be RuntimeDefault or a file name relative to the kubelet's seccomp "
                f"directory, such as binder-service-buildah.json (got {value!r})"
            )
        return value

    @field_validator("k8s_apparmor_profile")
    @classmethod
    def _apparmor_profile(cls, value: str) -> str:
        if value.lower() == "unconfined":
            raise ValueError("k8s_apparmor_profile: unconfined is not allowed (baseline forbids it)")
        if value and not _APPARMOR_NAME.fullmatch(value):
            raise ValueError(
                f"k8s_apparmor_profile must be the name of a loaded AppArmor profile (got {value!r})"
            )
        return value

    @field_validator("k8s_build_storage_limit")
    @classmethod
    def _storage_limit(cls, value: str) -> str:
        if not _QUANTITY.fullmatch(value.strip()):
            raise ValueError(f"k8s_build_storage_limit must be a quantity such as 20Gi (got {value!r})")
        return value.strip()

    @model_validator(mode="after")
    def _usable_db_url(self) -> Settings:
        # Here (a rule of the model, not of the field), so pydantic never prints the URL: it holds a password.
        if self.db_url is not None and self.db_url.get_secret_value():
            from .db_url import store_url

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
        rootless = os.geteuid() != 0 or self.build_user
        if limited and self.engine == "buildah" and self.executor == "local" and rootless:
            # Rootless buildah runs RUN steps in a chroot (no cgroup of their own), and cgroup v1 delegates
            # no controller to an unprivileged user: nothing could hold the limit.
            raise ValueError(
                "build_memory_limit and build_cpu_limit need the service to run as root with engine "
                "'buildah' and no build_user (rootless builds cannot be limited on this machine)"
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
        from .images.naming import qualified_prefix, validate_prefix

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
        return f"sqlite+aiosqlite:///{self.resolved_state_dir() / 'binder-service.sqlite'}"

    @property
    def build_retention_seconds(self) -> float:
        return parse_duration(self.build_retention)

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
