"""The Helm chart: rendered with the Helm SDK, linted strictly, every manifest validated against Kubernetes'
schemas (kubernetes-validate, strict), and its behaviour checked on the rendered objects."""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any

import helm_python as helm
import pytest

import chart_schema
from binder_service.settings import Settings
from tests.support.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    container,
    find,
    kube_validate,
    lint_problems,
    objects,
    one,
    plain_env,
    render,
    secret_data,
)

REGISTRY = "https://registry.example.org"
DB_URL = "postgresql+asyncpg://binder:db-pw@db.example.org/binder"
STATE_DIR = "/var/lib/binder-service"
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "registry-credentials": {
        "config": {"registry_url": REGISTRY, "max_concurrent_builds": 8},
        "registry": {"username": "pusher", "password": "s3cret-pw"},
    },
    "existing-secret": {
        "config": {"registry_url": REGISTRY},
        "registry": {"existingSecret": "my-push-creds"},
    },
    "ingress": {
        "config": {"registry_url": REGISTRY, "api_tokens": ["t0ken"]},
        "ingress": {
            "enabled": True,
            "ingressClassName": "nginx",
            "hosts": ["binder.example.org"],
            "tls": [{"secretName": "binder-tls", "hosts": ["binder.example.org"]}],
        },
    },
    "no-network-policies": {"config": {"registry_url": REGISTRY}, "networkPolicy": {"enabled": False}},
    "replicas-postgresql": {"replicas": 3, "config": {"registry_url": REGISTRY, "db_url": DB_URL}},
    "replicas-database-secret": {
        "replicas": 2,
        "config": {"registry_url": REGISTRY},
        "database": {"existingSecret": {"name": "binder-db", "key": "url"}},
    },
    "existing-claim": {"config": {"registry_url": REGISTRY}, "persistence": {"existingClaim": "my-claim"}},
    "jupyterhub": {
        "config": {"registry_url": REGISTRY},
        "jupyterhub": {
            "enabled": True,
            "serviceName": "builder",
            "baseUrl": "/jh/",
            "host": "https://hub.example.org",
        },
    },
    "everything": {
        "config": {
            "registry_url": REGISTRY,
            "k8s_build_resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "4Gi"}},
            "k8s_sticky_builds": True,
        },
        "build": {
            "nodeSelector": {"binder/builds": "yes"},
            "tolerations": [{"key": "builds", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "dockerApi": {
            "storage": {"emptyDir": {"sizeLimit": "50Gi"}},
            "extraArgs": ["--mtu=1400"],
            "daemonJson": {"registry-mirrors": ["https://mirror.example.org"]},
            "resources": {"requests": {"memory": "2Gi"}},
        },
        "networkPolicy": {
            "build": {
                "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"port": 5000}]}]
            }
        },
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "jupyterhub": {"enabled": True, "apiToken": "hub-t0ken"},
        "resources": {"limits": {"memory": "512Mi"}},
        "persistence": {
            "size": "20Gi",
            "storageClass": "fast-ssd",
            "accessModes": ["ReadWriteOncePod"],
            "annotations": {"helm.sh/resource-policy": "keep"},
        },
    },
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lints_renders_and_validates(name: str) -> None:
    values = VALUE_SETS[name]
    assert lint_problems(CHART, values) == []
    docs = objects(render(values))
    assert {d["kind"] for d in docs} >= {
        "Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "Secret", "DaemonSet",
    }  # fmt: skip
    kube_validate(docs)
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "binder-service"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == helm.Chart.load(str(CHART)).metadata["appVersion"]
        assert labels["helm.sh/chart"].startswith("binder-service-")


def test_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the config Secret and the Deployment's env hold is what the service reads back into Settings."""
    values = VALUE_SETS["everything"]
    docs = objects(render(values))
    env = dict(secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config")))
    env.update(plain_env(container(docs)))
    env["JUPYTERHUB_API_TOKEN"] = "from-the-hub-secret"  # a secretKeyRef in the pod
    for key in list(os.environ):
        if key.startswith(("BINDER_SERVICE_", "JUPYTERHUB_", "DOCKER_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    socket = f"/var/run/{NAMESPACE}-{RELEASE}/docker-api/docker-api.sock"
    assert settings.executor == "kubernetes"
    assert settings.registry_url == REGISTRY
    assert settings.k8s_namespace == NAMESPACE
    assert settings.k8s_docker_socket == socket
    assert settings.k8s_build_resources == {"requests": {"memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    assert settings.k8s_sticky_builds is True
    assert settings.k8s_node_selector == {"binder/builds": "yes"}
    assert settings.k8s_tolerations == [{"key": "builds", "operator": "Exists", "effect": "NoSchedule"}]
    assert settings.k8s_build_labels["app.kubernetes.io/instance"] == RELEASE
    assert settings.k8s_push_secret == ""  # no credentials in this value set
    selector = dict(part.split("=") for part in settings.k8s_docker_api_selector.split(","))
    daemonset_labels = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= daemonset_labels.items()
    assert (settings.host, settings.port, settings.base_url) == ("0.0.0.0", 8585, "/services/binder/")
    assert settings.hub_api_url == "http://hub:8081/hub/api"
    assert settings.hub_service_name == "binder"
    assert settings.hub_client_id == "service-binder"
    # The store is a SQLite file on the volume mounted at the state directory.
    assert str(settings.state_dir) == STATE_DIR
    assert settings.resolved_db_url().startswith(f"sqlite:///{STATE_DIR}/")
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    assert mounts[STATE_DIR] == "state"


# --- the service ------------------------------------------------------------------------------------


def test_deployment_is_locked_down_and_probed() -> None:
    docs = objects(render(VALUE_SETS["registry-credentials"]))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # The only writable places are the emptyDir at /tmp and the build store's volume.
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert "persistentVolumeClaim" in volumes[mounts[STATE_DIR]["name"]]
    assert all(m.get("readOnly") for path, m in mounts.items() if path not in ("/tmp", STATE_DIR))
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/versions", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8585, "protocol": "TCP"}]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    svc = one(docs, "Service")
    assert svc["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_probes_follow_the_base_url() -> None:
    c = container(objects(render({"config": {"base_url": "binder"}})))
    assert c["readinessProbe"]["httpGet"]["path"] == "/binder/health"
    assert c["livenessProbe"]["httpGet"]["path"] == "/binder/versions"
    c = container(objects(render(VALUE_SETS["jupyterhub"])))
    assert c["readinessProbe"]["httpGet"]["path"] == "/jh/services/builder/health"


def _checksum(values: dict[str, Any]) -> str:
    pod = one(objects(render(values)), "Deployment")["spec"]["template"]
    return str(pod["metadata"]["annotations"]["checksum/config"])


def test_config_checksum_changes_only_with_the_config() -> None:
    base = {"config": {"registry_url": REGISTRY, "api_tokens": ["a"]}}
    assert _checksum(base) == _checksum(base)  # deterministic
    assert _checksum(base) != _checksum({"config": {**base["config"], "max_concurrent_builds": 2}})
    assert _checksum(base) != _checksum({**base, "build": {"nodeSelector": {"pool": "builds"}}})
    assert _checksum(base) == _checksum({**base, "replicas": 0})


def test_config_secret_holds_settings_as_env() -> None:
    docs = objects(render(VALUE_SETS["registry-credentials"]))
    env = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))
    assert env["BINDER_SERVICE_REGISTRY_URL"] == REGISTRY
    assert env["BINDER_SERVICE_MAX_CONCURRENT_BUILDS"] == "8"
    assert env["BINDER_SERVICE_EXECUTOR"] == "kubernetes"
    assert json.loads(env["BINDER_SERVICE_K8S_BUILD_LABELS"])["app.kubernetes.io/instance"] == RELEASE
    assert all(key.startswith("BINDER_SERVICE_") for key in env)
    c = container(docs)
    assert c["envFrom"] == [{"secretRef": {"name": f"{RELEASE}-binder-service-config"}}]


def test_generated_token_only_without_other_auth() -> None:
    docs = objects(render({"config": {"registry_url": REGISTRY}}))
    auth = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-auth"))
    assert len(auth["token"]) == 48
    env = {e["name"]: e for e in container(docs)["env"]}
    ref = env["BINDER_SERVICE_API_TOKENS"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"{RELEASE}-binder-service-auth", "key": "token"}
    for values in (VALUE_SETS["ingress"], VALUE_SETS["jupyterhub"]):
        docs = objects(render(values))
        assert not find(docs, "Secret", f"{RELEASE}-binder-service-auth")
        assert "BINDER_SERVICE_API_TOKENS" not in {e["name"] for e in container(docs).get("env", [])}


def test_jupyterhub_environment() -> None:
    docs = objects(render(VALUE_SETS["jupyterhub"]))
    c = container(docs)
    env = plain_env(c)
    assert env == {
        # z2jh serves the hub's API under hub.baseUrl too.
        "JUPYTERHUB_API_URL": "http://hub:8081/jh/hub/api",
        "JUPYTERHUB_SERVICE_NAME": "builder",
        "JUPYTERHUB_SERVICE_PREFIX": "/jh/services/builder/",
        "JUPYTERHUB_BASE_URL": "/jh/",
        "JUPYTERHUB_CLIENT_ID": "service-builder",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/jh/services/builder/oauth_callback",
        "JUPYTERHUB_HOST": "https://hub.example.org",
    }
    token = next(e for e in c["env"] if e["name"] == "JUPYTERHUB_API_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": "hub.services.builder.apiToken"}
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    # Not paired: no label, no JUPYTERHUB_* variables.
    docs = objects(render(VALUE_SETS["ingress"]))
    assert (
        "hub.jupyter.org/network-access-hub"
        not in one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    )
    assert not [e for e in container(docs).get("env", []) if e["name"].startswith("JUPYTERHUB_")]


@pytest.mark.parametrize("base", ["/jh/", "/jh", "/a/b/"])
def test_one_value_drives_the_hub_base_url(base: str) -> None:
    """jupyterhub.baseUrl alone makes the hub API URL, the prefix, the OAuth callback and the probes."""
    values: dict[str, Any] = {
        "config": {"registry_url": REGISTRY},
        "jupyterhub": {"enabled": True, "baseUrl": base},
    }
    docs = objects(render(values))
    c = container(docs)
    env = plain_env(c)
    hub = "/" + base.strip("/") + "/"
    prefix = f"{hub}services/binder/"
    assert env["JUPYTERHUB_BASE_URL"] == hub
    assert env["JUPYTERHUB_API_URL"] == f"http://hub:8081{hub}hub/api"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == prefix
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == f"{prefix}oauth_callback"
    assert c["readinessProbe"]["httpGet"]["path"] == f"{prefix}health"
    assert c["livenessProbe"]["httpGet"]["path"] == f"{prefix}versions"
    settings = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))
    assert settings["BINDER_SERVICE_BASE_URL"] == prefix
    # An explicit apiUrl (a hub elsewhere) still wins.
    values["jupyterhub"]["apiUrl"] = "http://my-hub.other:8081/jh/hub/api"
    env = plain_env(container(objects(render(values))))
    assert env["JUPYTERHUB_API_URL"] == "http://my-hub.other:8081/jh/hub/api"


def test_base_url_that_the_hub_would_not_route_fails_clearly() -> None:
    values: dict[str, Any] = {"jupyterhub": {"enabled": True, "baseUrl": "/jh/"}}
    with pytest.raises(
        helm.HelmRenderError, match=r"differs from the hub's service prefix /jh/services/binder/"
    ):
        render({**values, "config": {"base_url": "/services/binder/"}})
    # The same prefix, written either way, is fine.
    c = container(objects(render({**values, "config": {"base_url": "jh/services/binder"}})))
    assert c["readinessProbe"]["httpGet"]["path"] == "/jh/services/binder/health"


def test_parent_chart_toggle_enabled_is_accepted() -> None:
    """`condition: binder-service.enabled` in a parent chart means values carry `enabled: true`."""
    assert lint_problems(CHART, {"enabled": True}) == []
    assert one(objects(render({"enabled": True})), "Deployment")
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError, match="/enabled"):
        chart.validate_schema(chart.merge_values({"enabled": "yes"}))


def test_jupyterhub_token_as_a_value() -> None:
    docs = objects(render(VALUE_SETS["everything"]))
    token = next(e for e in container(docs)["env"] if e["name"] == "JUPYTERHUB_API_TOKEN")
    ref = token["valueFrom"]["secretKeyRef"]
    assert secret_data(one(docs, "Secret", ref["name"]))[ref["key"]] == "hub-t0ken"
    assert "hub-t0ken" not in json.dumps(one(docs, "Deployment"))


def test_ingress_on_and_off() -> None:
    assert not find(objects(render(VALUE_SETS["registry-credentials"])), "Ingress")
    ingress = one(objects(render(VALUE_SETS["ingress"])), "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "binder.example.org"
    [path] = rule["http"]["paths"]
    assert path["path"] == "/"
    assert path["backend"]["service"] == {"name": f"{RELEASE}-binder-service", "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"secretName": "binder-tls", "hosts": ["binder.example.org"]}]


def _notes(values: dict[str, Any]) -> str:
    return next(text for path, text in render(values).items() if path.endswith("NOTES.txt"))


def test_notes_warn_about_what_is_missing() -> None:
    notes = _notes({})
    assert "config.registry_url is not set" in notes
    assert f"get secret {RELEASE}-binder-service-auth" in notes
    assert "networkPolicy.enabled is false" not in notes
    notes = _notes(VALUE_SETS["no-network-policies"])
    assert "config.registry_url is not set" not in notes
    assert "networkPolicy.enabled is false" in notes
    notes = _notes(VALUE_SETS["jupyterhub"])
    assert "get secret" not in notes
    assert f"url: http://{RELEASE}-binder-service:8585" in notes
    assert "baseUrl: /jh/" in notes
    assert "curl http://127.0.0.1:8585/jh/services/builder/health" in notes


# --- the build store ---------------------------------------------------------------------------------


def _state_volume(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == STATE_DIR]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return dict(volume)


def _config_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))


def test_one_replica_keeps_the_store_on_a_claim_of_its_own() -> None:
    """The default: a SQLite store in the state directory, on a PersistentVolumeClaim the chart makes, and
    pods replaced with Recreate so two never hold the store at once (before: an emptyDir under /tmp)."""
    docs = objects(render({"config": {"registry_url": REGISTRY}}))
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == f"{RELEASE}-binder-service-state"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}
    assert _state_volume(docs) == {
        "name": "state",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    }
    assert _config_env(docs)["BINDER_SERVICE_STATE_DIR"] == STATE_DIR
    assert "BINDER_SERVICE_DB_URL" not in _config_env(docs)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "Build store: SQLite on the PersistentVolumeClaim demo-binder-service-state" in _notes({})


def test_claim_size_class_and_annotations_are_values() -> None:
    docs = objects(render(VALUE_SETS["everything"]))
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # "-": no class at all (no dynamic provisioning), as other charts spell it.
    claim = one(objects(render({"persistence": {"storageClass": "-"}})), "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == ""


def test_an_existing_claim_is_used_and_none_made() -> None:
    docs = objects(render(VALUE_SETS["existing-claim"]))
    assert not find(docs, "PersistentVolumeClaim")
    assert _state_volume(docs)["persistentVolumeClaim"] == {"claimName": "my-claim"}
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_without_persistence_the_notes_say_the_store_is_lost() -> None:
    values: dict[str, Any] = {"persistence": {"enabled": False}}
    docs = objects(render(values))
    assert not find(docs, "PersistentVolumeClaim")
    assert "emptyDir" in _state_volume(docs)
    assert "persistence.enabled is false" in _notes(values)
    assert "persistence.enabled is false" not in _notes({})


def test_several_replicas_share_postgresql_from_config_db_url(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = objects(render(VALUE_SETS["replicas-postgresql"]))
    assert not find(docs, "PersistentVolumeClaim")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert "strategy" not in deployment["spec"]  # rolling updates: the replicas share the database
    assert "emptyDir" in _state_volume(docs)
    env = _config_env(docs)  # the chart's config Secret holds the URL
    assert env["BINDER_SERVICE_DB_URL"] == DB_URL
    assert "db-pw" not in json.dumps(deployment)
    for key in list(os.environ):
        if key.startswith(("BINDER_SERVICE_", "JUPYTERHUB_", "DOCKER_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BINDER_SERVICE_API_TOKENS", "generated")  # a secretKeyRef in the pod
    assert Settings().resolved_db_url() == DB_URL
    assert "Build store: the shared database of config.db_url; replicas: 3." in _notes(
        VALUE_SETS["replicas-postgresql"]
    )


def test_several_replicas_share_postgresql_from_an_existing_secret() -> None:
    docs = objects(render(VALUE_SETS["replicas-database-secret"]))
    assert not find(docs, "PersistentVolumeClaim")
    assert "strategy" not in one(docs, "Deployment")["spec"]
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["BINDER_SERVICE_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "binder-db", "key": "url"}
    assert "BINDER_SERVICE_DB_URL" not in _config_env(docs)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2}, "replicas: 2 needs a build store the replicas share: set config.db_url"),
        (  # a SQLite URL is no shared store either
            {"replicas": 3, "config": {"db_url": "sqlite:////data/b.sqlite"}},
            "replicas: 3 needs a build store the replicas share",
        ),
        (
            {"config": {"db_url": DB_URL}, "database": {"existingSecret": {"name": "s", "key": "url"}}},
            "config.db_url and database.existingSecret.name both give the build store's URL",
        ),
    ],
)
def test_several_replicas_without_a_shared_store_fail_to_render(values: dict[str, Any], message: str) -> None:
    """Before, replicas: 3 rendered and each replica kept a history of its own on its emptyDir."""
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(values)


# --- RBAC and secrets -------------------------------------------------------------------------------


def test_role_is_pods_and_logs_only() -> None:
    docs = objects(render())
    assert not find(docs, "ClusterRole")
    assert not find(docs, "ClusterRoleBinding")
    role = one(docs, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": one(docs, "ServiceAccount")["metadata"]["name"],
            "namespace": NAMESPACE,
        }
    ]


def test_push_secret_from_credentials() -> None:
    docs = objects(render(VALUE_SETS["registry-credentials"]))
    name = f"{RELEASE}-binder-service-push-secret"
    config = json.loads(secret_data(one(docs, "Secret", name))["config.json"])
    assert config == {
        "auths": {"registry.example.org": {"auth": base64.b64encode(b"pusher:s3cret-pw").decode()}}
    }
    env = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))
    assert env["BINDER_SERVICE_K8S_PUSH_SECRET"] == name
    assert env["BINDER_SERVICE_DOCKER_CONFIG"] == "/etc/binder-service/docker/config.json"
    pod = one(docs, "Deployment")["spec"]["template"]
    assert "checksum/push-secret" in pod["metadata"]["annotations"]
    [volume] = [v for v in pod["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == name
    # The password is only in the Secret.
    assert not [d for d in docs if d["kind"] != "Secret" and "s3cret-pw" in json.dumps(d)]


def test_push_secret_for_docker_hub_uses_the_index_key() -> None:
    values = {
        "config": {"registry_url": "https://registry-1.docker.io"},
        "registry": {"username": "u", "password": "p"},
    }
    docs = objects(render(values))
    config = json.loads(
        secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-push-secret"))["config.json"]
    )
    assert list(config["auths"]) == ["https://index.docker.io/v1/"]


def test_existing_push_secret_is_used_and_none_rendered() -> None:
    docs = objects(render(VALUE_SETS["existing-secret"]))
    assert not find(docs, "Secret", f"{RELEASE}-binder-service-push-secret")
    env = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))
    assert env["BINDER_SERVICE_K8S_PUSH_SECRET"] == "my-push-creds"
    pod = one(docs, "Deployment")["spec"]["template"]
    assert [v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v] == ["my-push-creds"]
    assert "checksum/push-secret" not in pod["metadata"]["annotations"]


def test_no_credentials_no_push_secret() -> None:
    docs = objects(render({"config": {"registry_url": REGISTRY}}))
    assert [d["metadata"]["name"] for d in find(docs, "Secret")] == [
        f"{RELEASE}-binder-service-auth",
        f"{RELEASE}-binder-service-config",
    ]
    env = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))
    assert env["BINDER_SERVICE_K8S_PUSH_SECRET"] == ""
    assert "BINDER_SERVICE_DOCKER_CONFIG" not in env


def test_credentials_without_registry_url_fail_clearly() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"registry.username needs config.registry_url"):
        render({"registry": {"username": "u", "password": "p"}})


# --- docker-api ---------------------------------------------------------------------------------------


def _host_paths(docs: list[dict[str, Any]]) -> dict[str, str]:
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    return {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}


def test_docker_api_host_paths_are_scoped_to_namespace_and_release() -> None:
    docs = objects(render(VALUE_SETS["registry-credentials"]))
    paths = _host_paths(docs)
    assert set(paths) == {"data", "run"}
    for path in paths.values():
        assert f"/{NAMESPACE}-{RELEASE}/" in path
    c = container(docs, "DaemonSet")
    assert c["securityContext"]["privileged"] is True
    socket = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))[
        "BINDER_SERVICE_K8S_DOCKER_SOCKET"
    ]
    assert f"--host=unix://{socket}" in c["args"]
    assert socket.startswith(paths["run"] + "/")
    # Two installs on one node never share a directory.
    other = _host_paths(objects(render(VALUE_SETS["registry-credentials"], name="other", namespace="ns2")))
    assert not set(paths.values()) & set(other.values())


def test_docker_api_socket_path_too_long_fails_clearly() -> None:
    with pytest.raises(helm.HelmRenderError, match="longer than a unix socket allows"):
        render({"dockerApi": {"hostRunRoot": "/" + "r" * 80}})


def test_docker_api_storage_args_daemon_json_and_placement() -> None:
    docs = objects(render(VALUE_SETS["everything"]))
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "emptyDir": {"sizeLimit": "50Gi"}}
    c = pod["containers"][0]
    assert "--mtu=1400" in c["args"]
    assert "--config-file=/etc/docker-api/daemon.json" in c["args"]
    daemon = json.loads(one(docs, "ConfigMap")["data"]["daemon.json"])
    assert daemon == {"registry-mirrors": ["https://mirror.example.org"]}
    # Build pods and docker-api share placement, so builds land where an engine is.
    env = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))
    assert (
        pod["nodeSelector"] == json.loads(env["BINDER_SERVICE_K8S_NODE_SELECTOR"]) == {"binder/builds": "yes"}
    )
    assert pod["tolerations"] == json.loads(env["BINDER_SERVICE_K8S_TOLERATIONS"])
    # A daemon.json change rolls the engines.
    other = {**VALUE_SETS["everything"], "dockerApi": {"daemonJson": {"mtu": 1400}}}
    checksum = one(objects(render(other)), "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert checksum != one(docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]


# --- network policies ----------------------------------------------------------------------------------

BLOCKED = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}


def _public_rule(policy: dict[str, Any]) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        r
        for r in policy["spec"]["egress"]
        if any(p.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for p in r["to"])
    ]
    [rule] = rules
    return rule


@pytest.mark.parametrize("component", ["build", "docker-api"])
def test_network_policies_block_private_ranges_and_metadata(component: str) -> None:
    docs = objects(render(VALUE_SETS["registry-credentials"]))
    policy = one(docs, "NetworkPolicy", f"{RELEASE}-binder-service-{component}")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []  # nothing connects to them
    public = _public_rule(policy)
    assert "ports" not in public
    [v4] = [p["ipBlock"] for p in public["to"] if p["ipBlock"]["cidr"] == "0.0.0.0/0"]
    assert set(v4["except"]) >= BLOCKED
    # The only other rule is DNS: port 53 alone reaches private addresses.
    others = [r for r in policy["spec"]["egress"] if r is not public]
    assert [sorted((p["port"], p["protocol"]) for p in r["ports"]) for r in others] == [
        [(53, "TCP"), (53, "UDP")]
    ]
    assert not [p for p in others[0]["to"] if "169.254" in p.get("ipBlock", {}).get("cidr", "")]


def test_build_policy_selects_the_build_pods_of_this_release() -> None:
    docs = objects(render(VALUE_SETS["registry-credentials"]))
    policy = one(docs, "NetworkPolicy", f"{RELEASE}-binder-service-build")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/component": "build", "app.kubernetes.io/instance": RELEASE}
    # Build pods carry component=build (the executor) plus k8s_build_labels (the chart): the policy applies.
    env = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))
    pod_labels = {"app.kubernetes.io/name": "binder-service", "app.kubernetes.io/component": "build"}
    pod_labels.update(json.loads(env["BINDER_SERVICE_K8S_BUILD_LABELS"]))
    assert selector.items() <= pod_labels.items()
    docker_api = one(docs, "NetworkPolicy", f"{RELEASE}-binder-service-docker-api")
    assert (
        docker_api["spec"]["podSelector"]["matchLabels"]
        == one(docs, "DaemonSet")["spec"]["selector"]["matchLabels"]
    )


def test_network_policies_off_and_extra_egress() -> None:
    assert not find(objects(render(VALUE_SETS["no-network-policies"])), "NetworkPolicy")
    policy = one(
        objects(render(VALUE_SETS["everything"])), "NetworkPolicy", f"{RELEASE}-binder-service-build"
    )
    assert policy["spec"]["egress"][-1] == {
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
        "ports": [{"port": 5000}],
    }


# --- schema ----------------------------------------------------------------------------------------------


def test_committed_schema_is_up_to_date() -> None:
    """Fails when Settings or values.schema.yaml changed without `python scripts/chart_schema.py`."""
    assert (CHART / "values.schema.json").read_text() == chart_schema.build()


def test_schema_config_covers_every_operator_setting() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(Settings.model_fields) - chart_schema.CHART_MANAGED
    assert set(Settings.model_fields) >= chart_schema.CHART_MANAGED  # no stale names


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bogus": 1}, "additional properties 'bogus' not allowed"),
        ({"config": {"no_such_setting": 1}}, "additional properties 'no_such_setting' not allowed"),
        ({"config": {"executor": "local"}}, "additional properties 'executor' not allowed"),  # chart-managed
        ({"config": {"max_concurrent_builds": "8"}}, "/config/max_concurrent_builds"),
        ({"config": {"max_concurrent_builds": 0}}, "/config/max_concurrent_builds"),
        ({"config": {"k8s_build_resources": []}}, "/config/k8s_build_resources"),
        ({"ingress": {"enabled": "yes"}}, "/ingress/enabled"),
        ({"dockerApi": {"unknown": True}}, "additional properties 'unknown' not allowed"),
        ({"jupyterhub": {"enabled": True, "apiUrl": "hub:8081"}}, "/jupyterhub/apiUrl"),
        ({"registry": {"username": 5}}, "/registry/username"),
        ({"persistence": {"size": "lots"}}, "/persistence/size"),
        ({"persistence": {"accessModes": ["ReadOnlyMany"]}}, "/persistence/accessModes"),
        ({"database": {"existingSecret": {"name": "s", "key": ""}}}, "/database/existingSecret/key"),
        ({"config": {"state_dir": "/data"}}, "additional properties 'state_dir' not allowed"),
    ],
)
def test_schema_rejects_unknown_keys_and_wrong_types(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError, match=message):
        chart.validate_schema(chart.merge_values(values))
    assert lint_problems(CHART, values)  # lint reports the same
