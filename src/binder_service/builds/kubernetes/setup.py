"""The Kubernetes executor made from Settings: the cluster's credentials, the namespace, the pod template."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path

from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration

from ...settings import Settings
from .executor import KubernetesExecutor
from .pod import PodTemplate

log = logging.getLogger(__name__)

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_template(settings: Settings) -> PodTemplate:
    return PodTemplate(
        image=settings.k8s_build_image,
        docker_socket=settings.k8s_docker_socket,
        deadline=settings.build_timeout,
        allowed_git_protocols=list(settings.allowed_git_protocols),
        engine=settings.engine,
        builder_image=settings.k8s_builder_image,
        seccomp_profile=settings.k8s_seccomp_profile,
        storage_limit=settings.k8s_build_storage_limit,
        apparmor_profile=settings.k8s_apparmor_profile,
        extra_args=list(settings.repo2docker_extra_args),
        push_secret=settings.k8s_push_secret,
        git_credentials_secret=settings.k8s_git_credentials_secret,
        node_selector=dict(settings.k8s_node_selector),
        tolerations=list(settings.k8s_tolerations),
        affinity=dict(settings.k8s_affinity),
        resources=dict(settings.k8s_build_resources),
        labels=dict(settings.k8s_build_labels),
    )


async def kubernetes_executor(
    settings: Settings, environ: Mapping[str, str], *, api: ApiClient | None = None
) -> KubernetesExecutor:
    """The executor for `settings`: in a pod, the service account's credentials; else the kubeconfig."""
    if settings.build_memory_limit or settings.build_cpu_limit:
        log.warning(
            "build_memory_limit and build_cpu_limit are for local builds: on Kubernetes the build pod's "
            "resources (k8s_build_resources) bind the build, and with engine 'buildah' its RUN steps"
        )
    in_cluster = bool(environ.get("KUBERNETES_SERVICE_HOST"))
    if api is None:
        conf = Configuration()
        if in_cluster:
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=conf, environ=dict(environ)
            )
        else:
            path = (environ.get("KUBECONFIG") or "").split(":")[0] or None
            await kube_config.load_kube_config(config_file=path, client_configuration=conf)
        owns, api = True, ApiClient(configuration=conf)
    else:
        owns = False
    namespace = settings.k8s_namespace
    if not namespace and in_cluster:
        with contextlib.suppress(OSError):
            namespace = (await asyncio.to_thread(NAMESPACE_FILE.read_text)).strip()
    return KubernetesExecutor(
        api,
        namespace=namespace or "default",
        template=pod_template(settings),
        api_timeout=settings.k8s_api_timeout,
        reap_interval=settings.k8s_reap_interval,
        pod_max_age=settings.k8s_pod_max_age,
        sticky_selector=settings.k8s_docker_api_selector if settings.k8s_sticky_builds else "",
        owns_client=owns,
    )
