"""The chart with each build engine (`build.engine`): every rendered manifest valid for Kubernetes (strict),
and judged by the Pod Security Standards baseline (tests/support/pss.py), together with the build pod the
service would create from the settings the chart gives it. With `buildah` nothing is privileged and nothing
mounts a hostPath; with `docker` the docker-api DaemonSet is privileged by design."""

from __future__ import annotations

import json
import os
from typing import Any

import helm_python as helm
import pytest

from binder_service.builds.executor import BuildJob
from binder_service.builds.kubernetes.pod import build_pod
from binder_service.builds.kubernetes.setup import pod_template
from binder_service.providers import ResolvedRepo
from binder_service.settings import Settings
from tests.support.chart import CHART, NAMESPACE, RELEASE, lint_problems, objects, one, render, secret_data
from tests.support.kube_schemas import assert_valid
from tests.support.pss import baseline_violations

REGISTRY = "https://registry.example.org"
APP_VERSION = helm.Chart.load(str(CHART)).metadata["appVersion"]
BUILDAH: dict[str, Any] = {"config": {"registry_url": REGISTRY}, "build": {"engine": "buildah"}}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "docker": {"config": {"registry_url": REGISTRY}, "dockerApi": {"diskBudget": "100GB"}},
    "buildah": BUILDAH,
    "buildah-everything": {
        "config": {
            "registry_url": REGISTRY,
            "k8s_build_resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "4Gi", "cpu": "2"}},
            "k8s_seccomp_profile": "RuntimeDefault",
            "k8s_build_storage_limit": "50Gi",
        },
        "registry": {"username": "pusher", "password": "s3cret-pw"},
        "build": {
            "engine": "buildah",
            "builderImage": {"repository": "registry.example.org/binder-service-builder", "tag": "1.2.3"},
            "nodeSelector": {"binder/builds": "yes"},
        },
        # Set, but with buildah there is no docker-api to apply them to.
        "dockerApi": {"diskBudget": "100GB", "daemonJson": {"mtu": 1400}},
    },
}
WORKLOADS = {"Pod", "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob"}
SHA = "3f9c0a1b2c3d4e5f60718293a4b5c6d7e8f90123"


def _settings(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The service's Settings from the chart's config Secret, as the pod's environment gives them."""
    for key in list(os.environ):
        if key.startswith(("BINDER_SERVICE_", "JUPYTERHUB_", "DOCKER_")):
            monkeypatch.delenv(key)
    for key, value in secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config")).items():
        monkeypatch.setenv(key, value)
    # The service's own mount of the push Secret (not here, and not what build pods use).
    monkeypatch.delenv("BINDER_SERVICE_DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("BINDER_SERVICE_API_TOKENS", "generated")  # the chart's token: a secretKeyRef
    return Settings()


def _build_pod(settings: Settings) -> dict[str, Any]:
    repo = ResolvedRepo(
        provider="git", repo_url="https://git.example.org/r.git", ref="main", commit=SHA, build_slug="r"
    )
    job = BuildJob(build_id="b1", image_name=f"registry.example.org/binder-r:{SHA}", repo=repo, push=True)
    return build_pod(job, pod_template(settings))


def _everything(values: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The rendered manifests and the build pod the service would create with them."""
    docs = objects(render(values))
    return [*docs, _build_pod(_settings(docs, monkeypatch))]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_manifest_and_the_build_pod_are_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    values = VALUE_SETS[name]
    assert lint_problems(CHART, values) == []
    for doc in _everything(values, monkeypatch):
        assert_valid(doc)


@pytest.mark.parametrize("name", ["buildah", "buildah-everything"])
def test_buildah_renders_nothing_privileged_and_no_host_path(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _everything(VALUE_SETS[name], monkeypatch)
    assert [d for d in docs if d["kind"] == "DaemonSet"] == []
    assert not any("docker-api" in d["metadata"]["name"] for d in docs)
    for doc in docs:
        text = str(doc)
        assert "hostPath" not in text, doc["metadata"]["name"]
        assert "'privileged': True" not in text, doc["metadata"]["name"]
        if doc["kind"] in WORKLOADS:
            assert baseline_violations(doc) == [], doc["metadata"]["name"]


def test_the_docker_engine_fails_baseline_by_design(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _everything(VALUE_SETS["docker"], monkeypatch)
    failing = {d["metadata"]["name"]: baseline_violations(d) for d in docs if d["kind"] in WORKLOADS}
    failing = {name: found for name, found in failing.items() if found}
    daemon = f"{RELEASE}-binder-service-docker-api"
    assert set(failing) == {daemon, f"{daemon}-pruner", _build_pod_name(docs)}
    assert any("privileged" in v for v in failing[daemon])
    assert all(any("hostPath" in v for v in found) for found in failing.values())


def _build_pod_name(docs: list[dict[str, Any]]) -> str:
    name: str = docs[-1]["metadata"]["name"]
    return name


def test_buildah_settings_from_the_chart(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = objects(render(VALUE_SETS["buildah-everything"]))
    settings = _settings(docs, monkeypatch)
    assert settings.engine == "buildah"
    assert settings.k8s_builder_image == "registry.example.org/binder-service-builder:1.2.3"
    assert settings.k8s_seccomp_profile == "RuntimeDefault"
    assert settings.k8s_build_storage_limit == "50Gi"
    assert settings.k8s_docker_api_selector == ""  # nothing to be sticky to
    env = secret_data(one(docs, "Secret", f"{RELEASE}-binder-service-config"))
    assert "BINDER_SERVICE_K8S_DOCKER_SOCKET" not in env
    pod = _build_pod(settings)
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example.org/binder-service-builder:1.2.3"
    assert container["resources"] == {"requests": {"memory": "1Gi"}, "limits": {"memory": "4Gi", "cpu": "2"}}
    assert container["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "build-storage", "emptyDir": {"sizeLimit": "50Gi"}} in pod["spec"]["volumes"]
    assert pod["spec"]["nodeSelector"] == {"binder/builds": "yes"}
    assert container["args"][4:6] == ["--engine", "buildah"]


def test_builder_image_defaults_to_the_chart_version(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(objects(render(BUILDAH)), monkeypatch)
    assert settings.k8s_builder_image == f"binder-service-builder:{APP_VERSION}"
    assert settings.k8s_namespace == NAMESPACE


def test_notes_say_what_each_engine_needs() -> None:
    docker = render(VALUE_SETS["docker"])["binder-service/templates/NOTES.txt"]
    buildah = render(BUILDAH)["binder-service/templates/NOTES.txt"]
    runtime_default = render(VALUE_SETS["buildah-everything"])["binder-service/templates/NOTES.txt"]
    assert "daemonset/" in docker
    assert "daemonset/" not in buildah
    assert "seccomp" not in docker
    assert "/var/lib/kubelet/seccomp/binder-service-buildah.json" in buildah
    assert f"binder-service-builder:{APP_VERSION}" in buildah
    assert f"kubectl label namespace {NAMESPACE} pod-security.kubernetes.io/enforce=baseline" in buildah
    assert "/var/lib/kubelet/seccomp" not in runtime_default  # k8s_seccomp_profile: RuntimeDefault
    assert "registry.example.org/binder-service-builder:1.2.3" in runtime_default


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"build": {"engine": "podman"}}, "/build/engine"),
        ({"config": {"engine": "buildah"}}, "additional properties 'engine' not allowed"),  # chart-managed
        ({"config": {"k8s_builder_image": "x"}}, "additional properties 'k8s_builder_image' not allowed"),
        ({"build": {"builderImage": {"repository": "", "tag": ""}}}, "/build/builderImage/repository"),
        ({"build": {"builderImage": {"repository": "x", "tag": "1", "pullPolicy": "Always"}}}, "pullPolicy"),
    ],
)
def test_schema_rejects_bad_engine_values(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError, match=message):
        chart.validate_schema(chart.merge_values(values))


def test_the_shipped_seccomp_profile_lets_buildah_make_user_namespaces() -> None:
    """chart/files/seccomp: errors by default (not Unconfined), but unshare, clone and mount are allowed
    without CAP_SYS_ADMIN (containerd's default allows them only with it)."""
    profile = json.loads((CHART / "files" / "seccomp" / "binder-service-buildah.json").read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    unconditional = {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("includes") and not rule.get("args")
        for name in rule["names"]
    }
    assert {
        "unshare",
        "clone",
        "clone3",
        "mount",
        "umount2",
        "setuid",
        "setgid",
        "chroot",
    } - unconditional <= {
        "chroot"  # allowed with CAP_SYS_CHROOT, which the pod has
    }
    chroot = [r for r in profile["syscalls"] if "chroot" in r["names"] and r["action"] == "SCMP_ACT_ALLOW"]
    assert [(r["names"], r["includes"]) for r in chroot] == [(["chroot"], {"caps": ["CAP_SYS_CHROOT"]})]
