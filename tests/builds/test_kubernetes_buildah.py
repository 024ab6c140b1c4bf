"""Build pods with engine `buildah` (builds/kubernetes/pod.py): the exact pod the executor sends through the
API fake (which checks it against Kubernetes' schemas), and Pod Security Standards baseline for it but not
for the Docker engine's pod, which mounts the node's docker socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration
from pydantic import ValidationError

from binder_service.builds.executor import BuildJob
from binder_service.builds.kubernetes.executor import KubernetesExecutor
from binder_service.builds.kubernetes.pod import BUILDAH_ENTRY_SCRIPT, PodTemplate
from binder_service.builds.kubernetes.setup import kubernetes_executor, pod_template
from binder_service.builds.r2d_args import r2d_args
from binder_service.errors import BuildError
from binder_service.images.naming import build_pod_name
from binder_service.providers import ResolvedRepo
from binder_service.settings import Settings
from tests.support.fake_k8s import FakeKube
from tests.support.kube_schemas import assert_valid
from tests.support.pss import baseline_violations
from tests.support.waiting import await_until

NS = "binder"
SHA = "3f9c0a1b2c3d4e5f60718293a4b5c6d7e8f90123"
IMAGE = f"127.0.0.1:5055/binder-git-hello-0123456789:{SHA}"
POD = build_pod_name(IMAGE)


def job() -> BuildJob:
    repo = ResolvedRepo(
        provider="git",
        repo_url="https://git.example.org/hello.git",
        ref="main",
        commit=SHA,
        build_slug="git-https://git.example.org/hello.git",
    )
    return BuildJob(build_id="b1", image_name=IMAGE, repo=repo, push=True, requester="alice")


def template(**overrides: Any) -> PodTemplate:
    values: dict[str, Any] = {
        "image": "quay.io/jupyterhub/repo2docker:2026.4.0",
        "docker_socket": "/var/run/docker-api/docker.sock",
        "deadline": 3600.0,
        "allowed_git_protocols": ["https"],
        "engine": "buildah",
        "builder_image": "registry.example.org/binder-service-builder:1.0.0",
        "seccomp_profile": "binder-service-buildah.json",
        "storage_limit": "30Gi",
        "push_secret": "registry-config",
        "labels": {"app.kubernetes.io/instance": "mybinder"},
    }
    values.update(overrides)
    return PodTemplate(**values)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as k:
        yield k


@pytest.fixture
async def sent(kube: FakeKube) -> AsyncIterator[Callable[[PodTemplate], Any]]:
    """The pod an executor with `template` creates through the fake (the build is cancelled after)."""
    api = ApiClient(configuration=Configuration(host=kube.url))
    executors: list[KubernetesExecutor] = []

    async def create(tpl: PodTemplate) -> dict[str, Any]:
        ex = KubernetesExecutor(api, namespace=NS, template=tpl, api_timeout=2.0, reap_interval=3600)
        executors.append(ex)
        task = asyncio.create_task(ex.run(job(), lambda phase, message: None))
        await await_until(lambda: kube.pod(POD, NS) is not None or task.done(), timeout=15)
        task.cancel()
        await asyncio.wait([task])
        (created,) = kube.kinds("create")
        body: dict[str, Any] = created.body
        return body

    yield create
    for ex in executors:
        await ex.aclose()
    await api.close()


async def test_the_exact_buildah_pod(kube: FakeKube, sent: Callable[[PodTemplate], Any]) -> None:
    tpl = template(
        git_credentials_secret="git-creds",
        resources={"requests": {"memory": "1Gi", "cpu": "1"}, "limits": {"memory": "4Gi", "cpu": "2"}},
    )
    pod = await sent(tpl)
    assert kube.rejected == []
    spec = pod["spec"]
    (container,) = spec["containers"]
    args = container.pop("args")
    assert args[:4] == ["/bin/sh", "-c", BUILDAH_ENTRY_SCRIPT, "repo2docker"]
    # The local executor's repo2docker arguments for buildah, from the same function: the engine once.
    assert args[4:] == r2d_args(job(), [], engine="buildah")
    assert args[4:6] == ["--engine", "buildah"]
    assert args.count("--engine") == 1
    assert args[-2:] == ["--", "https://git.example.org/hello.git"]
    env = container.pop("env")
    assert env[0]["name"] == "BINDER_R2D_CONFIG"
    assert env[1:] == [
        {"name": "HOME", "value": "/home/builder"},
        {"name": "XDG_RUNTIME_DIR", "value": "/home/builder/run"},
        {"name": "TMPDIR", "value": "/home/builder/tmp"},
        {"name": "BUILDAH_ISOLATION", "value": "chroot"},
        {"name": "GIT_TERMINAL_PROMPT", "value": "0"},
        {"name": "GIT_ALLOW_PROTOCOL", "value": "https"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "DOCKER_CONFIG", "value": "/etc/binder-service/docker-config"},
        {"name": "REGISTRY_AUTH_FILE", "value": "/etc/binder-service/docker-config/config.json"},
        {
            "name": "GIT_CREDENTIAL_ENV",
            "valueFrom": {"secretKeyRef": {"name": "git-creds", "key": "credentials"}},
        },
    ]
    assert container == {
        "name": "repo2docker",
        "image": "registry.example.org/binder-service-builder:1.0.0",
        "volumeMounts": [
            {"name": "build-storage", "mountPath": "/home/builder"},
            # the read-only root's scratch directories, on the same size-limited emptyDir
            {"name": "build-storage", "mountPath": "/tmp", "subPath": "tmp-root"},
            {"name": "build-storage", "mountPath": "/var/tmp", "subPath": "var-tmp"},
            {"name": "docker-config", "mountPath": "/etc/binder-service/docker-config", "readOnly": True},
        ],
        "securityContext": {
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": True,  # newuidmap's file capabilities need it (no no_new_privs)
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["SETUID", "SETGID", "SYS_CHROOT"]},
            "seccompProfile": {"type": "Localhost", "localhostProfile": "binder-service-buildah.json"},
        },
        # The RUN steps run in this container, so these bind them.
        "resources": {"requests": {"memory": "1Gi", "cpu": "1"}, "limits": {"memory": "4Gi", "cpu": "2"}},
    }
    assert spec["volumes"] == [
        {"name": "build-storage", "emptyDir": {"sizeLimit": "30Gi"}},
        {
            "name": "docker-config",
            "secret": {
                "secretName": "registry-config",
                "items": [{"key": "config.json", "path": "config.json"}],
                "defaultMode": 0o440,
            },
        },
    ]
    assert spec["securityContext"] == {"fsGroup": 1000}
    assert spec["automountServiceAccountToken"] is False
    assert "nodeSelector" not in spec  # no docker-api nodes to be near


async def test_runtime_default_seccomp(sent: Callable[[PodTemplate], Any]) -> None:
    pod = await sent(template(seccomp_profile="RuntimeDefault"))
    context = pod["spec"]["containers"][0]["securityContext"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(
    "tpl",
    [
        template(),
        template(push_secret="", seccomp_profile="RuntimeDefault", storage_limit="500M"),
        template(git_credentials_secret="git-creds", resources={"limits": {"memory": "2Gi"}}),
    ],
    ids=["localhost-seccomp", "runtime-default", "credentials-and-limits"],
)
async def test_buildah_pods_are_valid_and_pass_baseline(
    kube: FakeKube, sent: Callable[[PodTemplate], Any], tpl: PodTemplate
) -> None:
    pod = await sent(tpl)
    assert kube.rejected == []
    assert_valid(pod)
    assert baseline_violations(pod) == []
    volumes = pod["spec"]["volumes"]
    assert not any("hostPath" in v for v in volumes)


async def test_docker_pods_fail_baseline_by_design(
    kube: FakeKube, sent: Callable[[PodTemplate], Any]
) -> None:
    pod = await sent(template(engine="docker"))
    assert kube.rejected == []
    assert_valid(pod)
    assert baseline_violations(pod) == [
        "hostPath volumes: volume docker-socket is a hostPath (/var/run/docker-api/docker.sock)"
    ]


async def test_the_fake_refuses_what_the_api_server_would(kube: FakeKube) -> None:
    """A pod with a field Kubernetes does not know never gets created: the build fails, saying why."""
    api = ApiClient(configuration=Configuration(host=kube.url))
    tpl = template(resources={"limits": {"memory": "1Gi"}, "limit": {"memory": "1Gi"}})  # a typo
    ex = KubernetesExecutor(api, namespace=NS, template=tpl, api_timeout=2.0, reap_interval=3600)
    try:
        with pytest.raises(BuildError, match="refused the build pod") as raised:
            await ex.run(job(), lambda phase, message: None)
    finally:
        await ex.aclose()
        await api.close()
    assert "resources" in str(raised.value)
    assert any("'limit' was unexpected" in r for r in kube.rejected)
    assert kube.pods(NS) == []


async def test_an_apparmor_profile_is_named_on_the_pod(
    kube: FakeKube, sent: Callable[[PodTemplate], Any]
) -> None:
    pod = await sent(template(apparmor_profile="binder-service-buildah"))
    assert kube.rejected == []
    annotations = pod["metadata"]["annotations"]
    assert annotations["container.apparmor.security.beta.kubernetes.io/repo2docker"] == (
        "localhost/binder-service-buildah"
    )
    assert baseline_violations(pod) == []


def test_the_pod_template_follows_the_settings() -> None:
    settings = Settings(
        executor="kubernetes",
        engine="buildah",
        registry_url="http://127.0.0.1:5055",
        k8s_builder_image="b:1",
        k8s_seccomp_profile="profiles/buildah.json",
        k8s_apparmor_profile="buildah",
        k8s_build_storage_limit="1.5Gi",
    )
    tpl = pod_template(settings)
    assert (tpl.engine, tpl.builder_image, tpl.seccomp_profile) == ("buildah", "b:1", "profiles/buildah.json")
    assert (tpl.apparmor_profile, tpl.storage_limit) == ("buildah", "1.5Gi")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"k8s_seccomp_profile": "Unconfined"}, "Unconfined is not allowed"),
        ({"k8s_seccomp_profile": "unconfined"}, "Unconfined is not allowed"),
        ({"k8s_seccomp_profile": "/var/lib/kubelet/seccomp/x.json"}, "relative to the kubelet's seccomp"),
        ({"k8s_seccomp_profile": "../x.json"}, "relative to the kubelet's seccomp"),
        ({"k8s_seccomp_profile": ""}, "relative to the kubelet's seccomp"),
        ({"k8s_apparmor_profile": "unconfined"}, "unconfined is not allowed"),
        ({"k8s_apparmor_profile": "localhost/x"}, "name of a loaded AppArmor profile"),
        ({"k8s_build_storage_limit": "20 GB"}, "quantity such as 20Gi"),
        ({"k8s_build_storage_limit": "lots"}, "quantity such as 20Gi"),
    ],
)
def test_unsafe_or_malformed_pod_settings_are_refused(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**bad)


def test_sticky_builds_are_refused_with_buildah() -> None:
    with pytest.raises(ValidationError, match="k8s_sticky_builds is for engine 'docker'"):
        Settings(
            executor="kubernetes",
            engine="buildah",
            registry_url="http://127.0.0.1:5055",
            k8s_sticky_builds=True,
            k8s_docker_api_selector="app=docker-api",
        )


async def test_local_build_limits_are_said_not_to_apply_on_kubernetes(
    kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        executor="kubernetes",
        engine="buildah",
        registry_url="http://127.0.0.1:5055",
        build_memory_limit="1GB",
    )
    api = ApiClient(configuration=Configuration(host=kube.url))
    with caplog.at_level("WARNING", logger="binder_service.builds.kubernetes.setup"):
        ex = await kubernetes_executor(settings, {}, api=api)
    await ex.aclose()
    await api.close()
    assert any("k8s_build_resources" in r.getMessage() for r in caplog.records)
