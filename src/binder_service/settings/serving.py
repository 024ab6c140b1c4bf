"""Settings of serving: timeouts, the listening address, JupyterHub, per-user limits."""

from __future__ import annotations

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    field_validator,
)

from .values import ORIGIN, SecretWords, Words


class ServingSettings(BaseModel):
    """Settings of serving: timeouts, the listening address, JupyterHub, per-user limits."""

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
    hub_build_scopes: Words = Field(
        default_factory=list,
        description="Scopes that allow building (any one is enough). Default: "
        "`access:services!service=<name>`, `access:services`, `custom:binder:build`, `custom:binder:admin`. "
        "Set `custom:binder:build` to require the build scope.",
    )
    hub_admin_scopes: Words = Field(
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
    api_tokens: SecretWords = Field(
        default_factory=list,
        description="Static bearer tokens; when set, every build API call needs one of them (health, "
        "versions, metrics and provider listings stay open). Required when listening beyond loopback.",
    )
    cors_allow_origins: Words = Field(
        default_factory=list,
        description="Web origins (`https://host[:port]`, or `*` for any) whose pages may call the API "
        "from the browser (CORS), with a token in `Authorization`; cookies are never accepted "
        "cross-origin. Empty: no CORS headers.",
    )

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        origins = [v.rstrip("/") for v in value]
        for origin in origins:
            if origin != "*" and not ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not a web origin like https://example.org[:port] (or *)")
        return origins

    @field_validator("base_url")
    @classmethod
    def _slashes(cls, value: str) -> str:
        return "/" + value.strip("/") + "/" if value.strip("/") else "/"
