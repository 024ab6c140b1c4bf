"""Settings of the Kubernetes executor (build pods)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    field_validator,
)

from .. import __version__
from .values import APPARMOR_NAME, PROFILE_NAME, QUANTITY


class KubernetesSettings(BaseModel):
    """Settings of the Kubernetes executor (build pods)."""

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

    @field_validator("k8s_seccomp_profile")
    @classmethod
    def _seccomp_profile(cls, value: str) -> str:
        if value == "RuntimeDefault":
            return value
        if value.lower() == "unconfined":
            raise ValueError("k8s_seccomp_profile: Unconfined is not allowed (baseline forbids it)")
        if not PROFILE_NAME.fullmatch(value) or ".." in value.split("/"):
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
        if value and not APPARMOR_NAME.fullmatch(value):
            raise ValueError(
                f"k8s_apparmor_profile must be the name of a loaded AppArmor profile (got {value!r})"
            )
        return value

    @field_validator("k8s_build_storage_limit")
    @classmethod
    def _storage_limit(cls, value: str) -> str:
        if not QUANTITY.fullmatch(value.strip()):
            raise ValueError(f"k8s_build_storage_limit must be a quantity such as 20Gi (got {value!r})")
        return value.strip()
