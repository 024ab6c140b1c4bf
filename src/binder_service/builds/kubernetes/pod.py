"""The build pod the Kubernetes executor creates: one per image, repo2docker against the node's dockerd."""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from ...images import build_pod_name
from ...providers import ResolvedRepo
from ...providers.git.urls import redact_url
from ..executor import BuildJob
from ..r2d_args import r2d_args, r2d_config

CONTAINER = "repo2docker"
BASE_LABELS = {"app.kubernetes.io/name": "binder-service", "app.kubernetes.io/component": "build"}
# Prefix of the annotations that describe the build (a restarted replica reads them).
ANNOTATION = "binder-service/"
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


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """What every build pod shares (from Settings)."""

    image: str
    docker_socket: str
    deadline: float  # seconds: the pod's activeDeadlineSeconds
    allowed_git_protocols: list[str]
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
    env: list[dict[str, Any]] = [
        {"name": "BINDER_R2D_CONFIG", "value": r2d_config(repo.content_provider, repo.repo_url)},
        {"name": "DOCKER_HOST", "value": f"unix://{DOCKER_SOCKET}"},
        {"name": "GIT_TERMINAL_PROMPT", "value": "0"},  # a private repository fails instead of waiting
        {"name": "GIT_ALLOW_PROTOCOL", "value": ":".join(template.allowed_git_protocols)},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    mounts: list[dict[str, Any]] = [{"name": "docker-socket", "mountPath": DOCKER_SOCKET}]
    volumes: list[dict[str, Any]] = [
        {"name": "docker-socket", "hostPath": {"path": template.docker_socket, "type": "Socket"}}
    ]
    if template.push_secret:
        env.append({"name": "DOCKER_CONFIG", "value": DOCKER_CONFIG_DIR})
        mounts.append({"name": "docker-config", "mountPath": DOCKER_CONFIG_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "docker-config",
                "secret": {
                    "secretName": template.push_secret,
                    "items": [{"key": "config.json", "path": "config.json"}],
                },
            }
        )
    if template.git_credentials_secret:
        # repo2docker's image configures git's `env` credential helper, which reads this variable.
        secret_ref = {"name": template.git_credentials_secret, "key": "credentials"}
        env.append({"name": "GIT_CREDENTIAL_ENV", "valueFrom": {"secretKeyRef": secret_ref}})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": template.image,
        # No `command`: the image's entrypoint stays in charge and runs the arguments.
        "args": ["/bin/sh", "-c", ENTRY_SCRIPT, "repo2docker", *r2d_args(job, template.extra_args)],
        "env": env,
        "volumeMounts": mounts,
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
