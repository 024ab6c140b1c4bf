"""`binder-service pod-manifest`: the build pod the current settings would create, printed as YAML by the real
command, is exactly the pod the Kubernetes executor sends (through the API fake) for that build; a commit id
needs no network, and nothing contacts a cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import ApiClient, Configuration

from binder_service.builds.executor import BuildJob
from binder_service.builds.kubernetes.manifest import BUILD_ID
from binder_service.builds.kubernetes.setup import kubernetes_executor
from binder_service.images.naming import build_pod_name
from binder_service.providers import ResolvedRepo
from binder_service.settings import Settings
from tests.support.fake_k8s import FakeKube
from tests.support.kube_schemas import assert_valid
from tests.support.net import free_port
from tests.support.pss import baseline_violations
from tests.support.waiting import await_until

SHA = "3f9c0a1b2c3d4e5f60718293a4b5c6d7e8f90123"
NS = "builds"


def settings_env(engine: str) -> dict[str, str]:
    return {
        "BINDER_SERVICE_EXECUTOR": "kubernetes",
        "BINDER_SERVICE_ENGINE": engine,
        "BINDER_SERVICE_REGISTRY_URL": "http://127.0.0.1:5055",
        "BINDER_SERVICE_IMAGE_PREFIX": "binder-",
        "BINDER_SERVICE_K8S_NAMESPACE": NS,
        "BINDER_SERVICE_K8S_PUSH_SECRET": "push-creds",
        "BINDER_SERVICE_K8S_BUILDER_IMAGE": "registry.example.org/binder-service-builder:9.9.9",
        "BINDER_SERVICE_K8S_BUILD_RESOURCES": '{"limits": {"memory": "3Gi"}}',
        "BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS": "true",
    }


def pod_manifest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it: its own process, only these settings, no kubeconfig at all."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BINDER_SERVICE_", "KUBERNETES_", "JUPYTERHUB_", "DOCKER_"))
    }
    base["KUBECONFIG"] = "/nonexistent/kubeconfig"
    return subprocess.run(
        [sys.executable, "-m", "binder_service.cli", "pod-manifest", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def executor_pod(env: dict[str, str], repo_url: str, image: str) -> dict[str, Any]:
    """The pod the executor made from the same settings sends to the API for that build."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("BINDER_SERVICE_")]:
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        settings = Settings()
    repo = ResolvedRepo(provider="git", repo_url=repo_url, ref=SHA, commit=SHA, build_slug=repo_url)
    job = BuildJob(build_id=BUILD_ID, image_name=image, repo=repo, push=True, layer_cache=True)
    with FakeKube() as kube:
        api = ApiClient(configuration=Configuration(host=kube.url))
        ex = await kubernetes_executor(settings, {}, api=api)
        task = asyncio.create_task(ex.run(job, lambda phase, message: None))
        await await_until(lambda: kube.pod(build_pod_name(image), NS) is not None or task.done(), timeout=15)
        task.cancel()
        await asyncio.wait([task])
        await ex.aclose()
        await api.close()
        assert kube.rejected == []
        (created,) = kube.kinds("create")
        body: dict[str, Any] = created.body
        return body


@pytest.mark.parametrize("engine", ["buildah", "docker"])
async def test_prints_exactly_the_pod_the_executor_creates(engine: str) -> None:
    # A repository on a closed port: a commit id is never looked up, so nothing connects anywhere.
    repo_url = f"http://127.0.0.1:{free_port()}/hello.git"
    env = settings_env(engine)
    done = pod_manifest(env, repo_url, "--ref", SHA)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# The build pod binder-service would create")
    printed = yaml.safe_load(done.stdout)
    image = printed["metadata"]["annotations"]["binder-service/image"]
    assert image.startswith("127.0.0.1:5055/binder-git-")
    assert image.endswith(f":{SHA}")
    assert printed == await executor_pod(env, repo_url, image)
    assert_valid(printed)
    found = baseline_violations(printed)
    assert (found == []) == (engine == "buildah"), found


def test_a_branch_is_resolved_with_the_host_and_a_failure_is_clear() -> None:
    repo_url = f"http://127.0.0.1:{free_port()}/hello.git"  # nothing listens
    done = pod_manifest(settings_env("buildah"), repo_url, "--ref", "main")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "binder-service pod-manifest:" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_settings_are_refused_clearly() -> None:
    env = {**settings_env("buildah"), "BINDER_SERVICE_K8S_SECCOMP_PROFILE": "Unconfined"}
    done = pod_manifest(env, "https://example.org/r.git", "--ref", SHA)
    assert done.returncode == 2
    assert "Unconfined is not allowed" in done.stderr
    assert done.stdout == ""


def test_the_ref_is_required() -> None:
    done = pod_manifest(settings_env("buildah"), "https://example.org/r.git")
    assert done.returncode == 2
    assert "--ref" in done.stderr
