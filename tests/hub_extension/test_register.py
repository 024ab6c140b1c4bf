"""register(): the service, custom scopes and roles it adds to a JupyterHub config."""

from __future__ import annotations

import pytest
from binder_service_hub import ADMIN_SCOPE, BUILD_SCOPE, register
from traitlets.config import Config


def roles_by_name(c: Config) -> dict[str, dict[str, object]]:
    return {r["name"]: r for r in c.JupyterHub.load_roles}


def test_managed_service_with_scopes_and_roles() -> None:
    c = Config()
    entry = register(
        c,
        url="http://127.0.0.1:8585",
        command=["/venv/bin/binder-service", "serve"],
        environment={"BINDER_SERVICE_REGISTRY_URL": "http://127.0.0.1:5055"},
        admin_users=["ada"],
        admin_groups=["staff"],
    )
    assert c.JupyterHub.services == [entry]
    assert entry == {
        "name": "binder",
        "url": "http://127.0.0.1:8585",
        "display": False,
        "oauth_no_confirm": True,
        "command": ["/venv/bin/binder-service", "serve"],
        "environment": {"BINDER_SERVICE_REGISTRY_URL": "http://127.0.0.1:5055"},
    }
    assert set(c.JupyterHub.custom_scopes) == {BUILD_SCOPE, ADMIN_SCOPE}
    assert c.JupyterHub.custom_scopes[ADMIN_SCOPE]["subscopes"] == [BUILD_SCOPE]
    roles = roles_by_name(c)
    assert roles["user"]["scopes"] == ["self", "access:services!service=binder", BUILD_SCOPE]
    assert roles["binder-admin"]["scopes"] == ["access:services!service=binder", ADMIN_SCOPE]
    assert roles["binder-admin"]["users"] == ["ada"]
    assert roles["binder-admin"]["groups"] == ["staff"]
    # The spawner mixin requests builds at the service's internal URL, under its hub prefix.
    assert c.BuildFromRepoMixin.binder_service_url == "http://127.0.0.1:8585/services/binder/"


def test_external_service_keeps_the_rest_of_the_config() -> None:
    c = Config()
    c.JupyterHub.base_url = "/jhub/"
    c.JupyterHub.services = [{"name": "other", "api_token": "x"}]
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "read:groups"]}]
    c.JupyterHub.custom_scopes = {"custom:other:do": {"description": "other"}}
    entry = register(c, name="builds", url="http://binder:8585/", api_token="secret-token")
    assert [s["name"] for s in c.JupyterHub.services] == ["other", "builds"]
    assert entry["api_token"] == "secret-token"
    assert "command" not in entry
    assert set(c.JupyterHub.custom_scopes) == {"custom:other:do", BUILD_SCOPE, ADMIN_SCOPE}
    roles = roles_by_name(c)
    # An existing user role is extended, not replaced.
    assert roles["user"]["scopes"] == ["self", "read:groups", "access:services!service=builds", BUILD_SCOPE]
    assert "users" not in roles["builds-admin"]
    assert c.BuildFromRepoMixin.binder_service_url == "http://binder:8585/jhub/services/builds/"


def test_lazy_appends_made_before_are_kept() -> None:
    c = Config()
    c.JupyterHub.services.append({"name": "other", "api_token": "x"})
    c.JupyterHub.load_roles.append({"name": "ops", "scopes": ["admin:users"], "users": ["bo"]})
    register(c, url="http://127.0.0.1:8585", build_scope_for_users=False, spawner_url="http://svc/")
    assert [s["name"] for s in c.JupyterHub.services] == ["other", "binder"]
    assert set(roles_by_name(c)) == {"ops", "binder-admin"}  # no user role when not asked for
    assert c.BuildFromRepoMixin.binder_service_url == "http://svc/"


def test_adopts_an_existing_entry_and_keeps_what_the_operator_set() -> None:
    """z2jh has already made c.JupyterHub.services from hub.services when extraConfig calls register()."""
    c = Config()
    operator = {
        "name": "binder",
        "url": "http://binder:8585",
        "api_token": "generated-by-z2jh",
        "display": True,
        "info": {"docs": "https://example.org/binder"},
        "oauth_client_allowed_scopes": ["read:users:name!user"],
        "oauth_no_confirm": False,
    }
    c.JupyterHub.services = [{"name": "other", "api_token": "x"}, dict(operator)]
    entry = register(c, build_scope_for_users=False)
    assert entry == operator  # nothing the operator set is dropped or changed
    assert c.JupyterHub.services == [{"name": "other", "api_token": "x"}, operator]
    assert c.BuildFromRepoMixin.binder_service_url == "http://binder:8585/services/binder/"
    assert set(c.JupyterHub.custom_scopes) == {BUILD_SCOPE, ADMIN_SCOPE}


def test_adopting_adds_only_what_is_missing() -> None:
    c = Config()
    c.JupyterHub.services.append({"name": "binder", "info": {"team": "ops"}})  # z2jh's lazy append
    entry = register(c, url="http://binder:8585", api_token="t0ken")
    assert entry == {
        "name": "binder",
        "info": {"team": "ops"},
        "url": "http://binder:8585",
        "api_token": "t0ken",
        "display": False,
        "oauth_no_confirm": True,
    }
    assert c.JupyterHub.services == [entry]


@pytest.mark.parametrize(
    ("url", "token", "key"),
    [("http://elsewhere:8585", None, "url"), (None, "another-secret", "api_token")],
)
def test_contradicting_an_existing_entry_is_an_error(url: str | None, token: str | None, key: str) -> None:
    c = Config()
    c.JupyterHub.services = [{"name": "binder", "url": "http://binder:8585", "api_token": "the-secret"}]
    with pytest.raises(ValueError, match=f"already has another '{key}'") as info:
        register(c, url=url, api_token=token)
    assert "secret" not in str(info.value)  # tokens never end up in an error message


def test_registering_twice_is_the_same_as_once() -> None:
    c = Config()
    first = register(c, url="http://127.0.0.1:8585", admin_users=["ada"])
    second = register(c, url="http://127.0.0.1:8585", admin_users=["bo"])
    assert c.JupyterHub.services == [first] == [second]
    roles = roles_by_name(c)
    assert roles["user"]["scopes"] == ["self", "access:services!service=binder", BUILD_SCOPE]
    assert roles["binder-admin"]["users"] == ["ada", "bo"]
    assert len(c.JupyterHub.load_roles) == 2


def test_needs_a_url_from_somewhere() -> None:
    with pytest.raises(ValueError, match="needs a url"):
        register(Config())
    c = Config()
    c.JupyterHub.services = [{"name": "binder"}, {"name": "binder"}]
    with pytest.raises(ValueError, match="2 JupyterHub services are named 'binder'"):
        register(c, url="http://127.0.0.1:8585")


def test_environment_needs_a_managed_service() -> None:
    with pytest.raises(ValueError, match="managed service"):
        register(Config(), url="http://127.0.0.1:8585", environment={"A": "b"})
