"""One call in `jupyterhub_config.py` that registers binder-service with the hub.

    from binder_service_hub import register
    register(c, url="http://127.0.0.1:8585", command=["binder-service", "serve"])

adds the service (managed when `command` is given, external otherwise), the custom scopes
`custom:binder:build` and `custom:binder:admin`, the roles that hand them out, and the service's internal
URL for the spawner mixin. The hub's spawner needs no role: it mints its users' build tokens itself.

A service of that name already in `c.JupyterHub.services` (z2jh's `hub.services.<name>`) is adopted: what
the operator set there stays, register() only adds what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from traitlets.config import Config
from traitlets.config.loader import LazyConfigValue

BUILD_SCOPE = "custom:binder:build"
ADMIN_SCOPE = "custom:binder:admin"

CUSTOM_SCOPES: dict[str, dict[str, Any]] = {
    BUILD_SCOPE: {"description": "Build images from repositories with binder-service."},
    ADMIN_SCOPE: {
        "description": "See and cancel every build of binder-service.",
        "subscopes": [BUILD_SCOPE],
    },
}


def access_scope(name: str) -> str:
    """The scope that lets a token reach the service `name` at all."""
    return f"access:services!service={name}"


def register(
    c: Config,
    *,
    name: str = "binder",
    url: str | None = None,
    command: Sequence[str] | None = None,
    api_token: str | None = None,
    environment: Mapping[str, str] | None = None,
    build_scope_for_users: bool = True,
    admin_users: Iterable[str] = (),
    admin_groups: Iterable[str] = (),
    display: bool = False,
    oauth_no_confirm: bool = True,
    spawner_url: str | None = None,
) -> dict[str, Any]:
    """Register binder-service as the JupyterHub service `name`; returns the service's entry.

    url: where the hub (its proxy and the spawner) reaches the service, e.g. `http://127.0.0.1:8585`;
        may be left out when an existing entry of that name has one.
    command: run it as a managed service (the hub starts it and gives it its `JUPYTERHUB_*` variables);
        without it the service is external and `api_token` is the token it was given.
    environment: extra environment for a managed service (`BINDER_SERVICE_*` settings).
    build_scope_for_users: give every user (JupyterHub's `user` role) access to the service and the
        build scope, so the spawn form's builds and the BinderHub API work for everyone.
    admin_users, admin_groups: members of the role `<name>-admin` (`custom:binder:admin`).
    display, oauth_no_confirm: defaults for the entry; an existing entry's own values win.
    spawner_url: the URL the spawner mixin requests builds at; default: `url` + the service prefix.

    An existing entry of the same name is adopted: its keys are kept, missing ones are added, and an
    argument that contradicts one of them (another `url`, `api_token` or `command`) is a ValueError.
    """
    hub = c.JupyterHub
    services = _config_list(hub, "services")
    existing = [i for i, s in enumerate(services) if isinstance(s, Mapping) and s.get("name") == name]
    if len(existing) > 1:
        raise ValueError(f"{len(existing)} JupyterHub services are named {name!r}")
    service: dict[str, Any] = dict(services[existing[0]]) if existing else {"name": name}
    given: dict[str, Any] = {"url": url, "api_token": api_token}
    if command is not None:
        given["command"] = list(command)
        given["environment"] = dict(environment or {})
    elif environment:
        raise ValueError("environment only applies to a managed service (give command too)")
    for key, value in given.items():
        if value is None:
            continue
        if key in service and service[key] != value:
            # Never print a token: name the key only.
            raise ValueError(f"the JupyterHub service {name!r} already has another {key!r}")
        service[key] = value
    if not service.get("url"):
        raise ValueError(f"the JupyterHub service {name!r} needs a url (give url=...)")
    service.setdefault("display", display)
    service.setdefault("oauth_no_confirm", oauth_no_confirm)
    if existing:
        services[existing[0]] = service
    else:
        services.append(service)
    hub.services = services

    scopes = _config_dict(hub, "custom_scopes")
    for scope, spec in CUSTOM_SCOPES.items():
        scopes.setdefault(scope, dict(spec))
    hub.custom_scopes = scopes

    roles = _config_list(hub, "load_roles")
    if build_scope_for_users:
        _add_scopes(roles, "user", ["self", access_scope(name), BUILD_SCOPE])
    admin: dict[str, Any] = {
        "name": f"{name}-admin",
        "description": f"See and cancel every build of the {name} service",
        "scopes": [access_scope(name), ADMIN_SCOPE],
    }
    if admin_users:
        admin["users"] = list(admin_users)
    if admin_groups:
        admin["groups"] = list(admin_groups)
    _merge_role(roles, admin)
    hub.load_roles = roles

    base_url = hub.get("base_url") if isinstance(hub.get("base_url"), str) else "/"
    prefix = "/" + "/".join(p for p in (str(base_url).strip("/"), "services", name) if p) + "/"
    c.BuildFromRepoMixin.binder_service_url = spawner_url or str(service["url"]).rstrip("/") + prefix
    return service


def _config_list(section: Config, key: str) -> list[Any]:
    # Config hands out a LazyConfigValue for container traits appended to before being set.
    value = dict.get(section, key)
    if isinstance(value, LazyConfigValue):
        return list(value.get_value([]))
    return list(value) if value is not None else []


def _config_dict(section: Config, key: str) -> dict[str, Any]:
    value = dict.get(section, key)
    if isinstance(value, LazyConfigValue):
        return dict(value.get_value({}))
    return dict(value) if value is not None else {}


def _add_scopes(roles: list[Any], role_name: str, scopes: list[str]) -> None:
    """Add scopes to the role `role_name` in load_roles, creating it (as JupyterHub's default) if absent."""
    for i, role in enumerate(roles):
        if isinstance(role, Mapping) and role.get("name") == role_name:
            have = list(role.get("scopes", []))
            roles[i] = {**role, "scopes": have + [s for s in scopes if s not in have]}
            return
    roles.append({"name": role_name, "scopes": scopes})


def _merge_role(roles: list[Any], role: dict[str, Any]) -> None:
    """Add `role` to load_roles, or add its scopes, users and groups to the role of that name."""
    for i, have in enumerate(roles):
        if isinstance(have, Mapping) and have.get("name") == role["name"]:
            merged = dict(have)
            for key in ("scopes", "users", "groups"):
                old = list(have.get(key, []))
                new = old + [v for v in role.get(key, []) if v not in old]
                if new:
                    merged[key] = new
            merged.setdefault("description", role["description"])
            roles[i] = merged
            return
    roles.append(role)
