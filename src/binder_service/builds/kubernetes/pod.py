"""The build pod the Kubernetes executor creates: one per image, repo2docker with one of two engines.

- `docker`: repo2docker drives the node's dockerd (the docker-api DaemonSet) through its socket, a hostPath.
- `buildah`: repo2docker drives buildah inside the pod (this package's engine plugin), rootless in the builder
  image: no socket, no hostPath, nothing privileged (Pod Security Standards baseline), and the pod's resources
  bind the build's RUN steps because they run in it (`_buildah_container`: what it needs and why).
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from ...images.naming import build_pod_name
from ...providers import ResolvedRepo
from ...security.redaction import redact_url
from ..executor import BuildJob
from ..r2d_args import r2d_args, r2d_config

CONTAINER = "repo2docker"
BASE_LABELS = {"app.kubernetes.io/name": "binder-service", "app.kubernetes.io/component": "build"}
# Prefix of the annotations that describe the build (a restarted replica reads them).
ANNOTATION = "binder-service/"
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
DOCKER_SOCKET = "/var/run/docker.sock"  # where the node's socket appears inside the container
DOCKER_CONFIG_DIR = "/etc/binder-service/docker-config"
# The image's entrypoint runs this with the repo2docker arguments as "$@": the config that limits repo2docker
# to one content provider arrives in an environment variable and is written to a fresh directory, which is
# also the working directory (so no stray repo2docker_config.py is picked up). Nothing is interpolated into
# the script; the repository URL is an argument after `--`.
ENTRY_SCRIPT = (
    'd="$(mktemp -d)" && printf "%s" "$BINDER_R2D_CONFIG" > "$d/binder_r2d_config.py" && cd "$d" '
    '&& exec repo2docker --config "$d/binder_r2d_config.py" "$@"'
)
# buildah keeps its storage, run directory and temporary files on the size-limited emptyDir (its HOME;
# TMPDIR on the storage's own mount, not a mount of its own, across which a file could not be renamed).
BUILDER_UID = 1000  # the builder image's user, whose subordinate id ranges are in its /etc/subuid
BUILD_HOME = "/home/builder"
BUILDAH_ENTRY_SCRIPT = 'mkdir -p -m 0700 "$XDG_RUNTIME_DIR" "$TMPDIR" && ' + ENTRY_SCRIPT
# The root filesystem is read-only; what the build writes outside HOME goes to these, on the same
# size-limited emptyDir: buildah writes image configs to /var/tmp whatever TMPDIR says, and its chroot
# helper, started with an empty environment, makes its runtime directory in /tmp (measured under runc).
SCRATCH_DIRS = [("/tmp", "tmp-root"), ("/var/tmp", "var-tmp")]  # noqa: S108 (mount path, subPath)
# Rootless buildah in a pod (measured under runc, issue 18): newuidmap/newgidmap carry file capabilities
# (cap_setuid/cap_setgid+ep), which only take effect without no_new_privs, hence allowPrivilegeEscalation;
# the bounding set keeps just those two and SYS_CHROOT (chroot isolation): baseline, not restricted.
BUILDAH_CAPABILITIES = ["SETUID", "SETGID", "SYS_CHROOT"]


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """What every build pod shares (from Settings)."""

    image: str
    docker_socket: str
    deadline: float  # seconds: the pod's activeDeadlineSeconds
    allowed_git_protocols: list[str]
    engine: str = "docker"  # or "buildah": `builder_image`, no socket, the securityContext below
    builder_image: str = ""
    seccomp_profile: str = "RuntimeDefault"  # or a Localhost profile's path (buildah pods)
    storage_limit: str = "20Gi"  # the buildah pod's emptyDir
    apparmor_profile: str = ""  # a profile loaded on the nodes (buildah pods); empty: the runtime's default
    extra_args: list[str] = field(default_factory=list)
    push_secret: str = ""
    git_credentials_secret: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    affinity: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # extra labels, e.g. the Helm release's

    @property
    def all_labels(self) -> dict[str, str]:
        return {**self.labels, **BASE_LABELS}

    @property
    def label_selector(self) -> str:
        """Selects this service's build pods (and not another release's in the same namespace)."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.all_labels.items()))


def build_pod(job: BuildJob, template: PodTemplate, *, node: str | None = None) -> dict[str, Any]:
    """The pod manifest for `job`; `node` (sticky builds) is preferred, not required."""
    repo = job.repo
    annotations = {
        f"{ANNOTATION}image": job.image_name,
        f"{ANNOTATION}build-id": job.build_id,
        f"{ANNOTATION}provider": repo.provider,
        f"{ANNOTATION}repo": redact_url(repo.repo_url),
        f"{ANNOTATION}ref": repo.ref,
        f"{ANNOTATION}commit": repo.commit,
        f"{ANNOTATION}build-slug": redact_url(repo.build_slug),
        f"{ANNOTATION}content-provider": repo.content_provider,
    }
    if job.requester is not None:
        annotations[f"{ANNOTATION}requester"] = job.requester
    if template.engine == "buildah" and template.apparmor_profile:
        # The annotation, not securityContext.appArmorProfile: that field needs Kubernetes 1.30.
        annotations[f"{APPARMOR_ANNOTATION}{CONTAINER}"] = f"localhost/{template.apparmor_profile}"
    env: list[dict[str, Any]] = [
        {"name": "BINDER_R2D_CONFIG", "value": r2d_config(repo.content_provider, repo.repo_url)},
    ]
    if template.engine == "buildah":
        container, volumes = _buildah_container(template)
    else:
        container, volumes = _docker_container(template)
    env += container.pop("env")
    env += [
        {"name": "GIT_TERMINAL_PROMPT", "value": "0"},  # a private repository fails instead of waiting
        {"name": "GIT_ALLOW_PROTOCOL", "value": ":".join(template.allowed_git_protocols)},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    mounts: list[dict[str, Any]] = container.pop("volumeMounts")
    if template.push_secret:
        env.append({"name": "DOCKER_CONFIG", "value": DOCKER_CONFIG_DIR})
        if template.engine == "buildah":
            # buildah's own name for the file (containers-auth.json reads docker's config.json format).
            env.append({"name": "REGISTRY_AUTH_FILE", "value": f"{DOCKER_CONFIG_DIR}/config.json"})
        mounts.append({"name": "docker-config", "mountPath": DOCKER_CONFIG_DIR, "readOnly": True})
        secret: dict[str, Any] = {
            "secretName": template.push_secret,
            "items": [{"key": "config.json", "path": "config.json"}],
        }
        if template.engine == "buildah":
            secret["defaultMode"] = 0o440  # the builder reads it through fsGroup; nobody else can
        volumes.append({"name": "docker-config", "secret": secret})
    if template.git_credentials_secret:
        # repo2docker's image configures git's `env` credential helper, which reads this variable.
        secret_ref = {"name": template.git_credentials_secret, "key": "credentials"}
        env.append({"name": "GIT_CREDENTIAL_ENV", "valueFrom": {"secretKeyRef": secret_ref}})
    script = BUILDAH_ENTRY_SCRIPT if template.engine == "buildah" else ENTRY_SCRIPT
    container = {
        "name": CONTAINER,
        "image": container.pop("image"),
        # No `command`: the image's entrypoint stays in charge and runs the arguments.
        "args": [
            "/bin/sh",
            "-c",
            script,
            "repo2docker",
            *r2d_args(job, template.extra_args, engine=template.engine),
        ],
        "env": env,
        "volumeMounts": mounts,
        **container,  # the buildah pod's securityContext
    }
    if template.resources:
        container["resources"] = copy.deepcopy(template.resources)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": max(1, math.ceil(template.deadline)),
        "automountServiceAccountToken": False,  # repo2docker has no business with the Kubernetes API
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": volumes,
    }
    if template.engine == "buildah":
        # The push Secret's files and the emptyDir belong to the builder's group.
        spec["securityContext"] = {"fsGroup": BUILDER_UID}
    if template.node_selector:
        spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        spec["tolerations"] = copy.deepcopy(template.tolerations)
    affinity = prefer_node(template.affinity, node) if node else copy.deepcopy(template.affinity)
    if affinity:
        spec["affinity"] = affinity
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": build_pod_name(job.image_name),
            "labels": template.all_labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def _docker_container(template: PodTemplate) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """repo2docker's image against the node's dockerd: the docker-api socket from a hostPath."""
    container: dict[str, Any] = {
        "image": template.image,
        "env": [{"name": "DOCKER_HOST", "value": f"unix://{DOCKER_SOCKET}"}],
        "volumeMounts": [{"name": "docker-socket", "mountPath": DOCKER_SOCKET}],
    }
    volumes = [{"name": "docker-socket", "hostPath": {"path": template.docker_socket, "type": "Socket"}}]
    return container, volumes


def _buildah_container(template: PodTemplate) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The builder image, rootless on a read-only root: buildah's storage (and every directory the build
    writes) on a size-limited emptyDir, no socket, no hostPath."""
    if template.seccomp_profile == "RuntimeDefault":
        seccomp: dict[str, str] = {"type": "RuntimeDefault"}
    else:
        seccomp = {"type": "Localhost", "localhostProfile": template.seccomp_profile}
    container: dict[str, Any] = {
        "image": template.builder_image,
        "env": [
            {"name": "HOME", "value": BUILD_HOME},
            {"name": "XDG_RUNTIME_DIR", "value": f"{BUILD_HOME}/run"},
            {"name": "TMPDIR", "value": f"{BUILD_HOME}/tmp"},  # noqa: S108 (on the emptyDir) the clone, build contexts, layer blobs
            {"name": "BUILDAH_ISOLATION", "value": "chroot"},  # no runtime in the pod: chroot, not OCI
        ],
        "volumeMounts": [
            {"name": "build-storage", "mountPath": BUILD_HOME},
            *({"name": "build-storage", "mountPath": path, "subPath": sub} for path, sub in SCRATCH_DIRS),
        ],
        "securityContext": {
            "runAsUser": BUILDER_UID,
            "runAsGroup": BUILDER_UID,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": True,
            "readOnlyRootFilesystem": True,  # the build writes to HOME and SCRATCH_DIRS only
            "capabilities": {"drop": ["ALL"], "add": list(BUILDAH_CAPABILITIES)},
            "seccompProfile": seccomp,
        },
    }
    volumes = [{"name": "build-storage", "emptyDir": {"sizeLimit": template.storage_limit}}]
    return container, volumes


def prefer_node(affinity: dict[str, Any], node: str) -> dict[str, Any]:
    """`affinity` plus a strong preference for `node` (by name); the operator's own terms stay."""
    merged = copy.deepcopy(affinity)
    node_affinity = merged.setdefault("nodeAffinity", {})
    preferred = node_affinity.setdefault("preferredDuringSchedulingIgnoredDuringExecution", [])
    preferred.append(
        {
            "weight": 100,
            "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]},
        }
    )
    return merged


def rendezvous(key: str, nodes: list[str]) -> str | None:
    """The node `key` prefers: highest hash of (key, node). Adding or losing a node moves only its share."""
    if not nodes:
        return None
    return max(nodes, key=lambda n: hashlib.sha256(f"{key}\0{n}".encode("utf-8", "surrogatepass")).digest())


def job_from_annotations(notes: dict[str, str]) -> BuildJob | None:
    """The build a pod's annotations describe (see `build_pod`), or None if they are incomplete."""
    try:
        repo = ResolvedRepo(
            provider=notes[f"{ANNOTATION}provider"],
            repo_url=notes[f"{ANNOTATION}repo"],
            ref=notes[f"{ANNOTATION}ref"],
            commit=notes[f"{ANNOTATION}commit"],
            build_slug=notes[f"{ANNOTATION}build-slug"],
            content_provider=notes.get(f"{ANNOTATION}content-provider", "Git"),
        )
        return BuildJob(
            build_id=notes.get(f"{ANNOTATION}build-id", ""),
            image_name=notes[f"{ANNOTATION}image"],
            repo=repo,
            push=True,
            requester=notes.get(f"{ANNOTATION}requester"),
        )
    except KeyError:
        return None
