"""The buildah build pod's spec is enough, not only well-formed: its container, translated into an OCI runtime
config as a kubelet with containerd would (tests/support/oci.py: uid 1000, only SETUID/SETGID/SYS_CHROOT,
no_new_privs as allowPrivilegeEscalation says, the chart's Localhost seccomp profile, masked /proc, no extra
devices, a read-only root, the emptyDir and the push Secret as bind mounts), runs under runc in the builder
image (Dockerfile.builder) and builds and pushes a real image to a registry that wants the Secret's
credentials. And what `restricted` would change (no_new_privs) breaks it, as docs/kubernetes.md says."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import world
from binder_service.builds.executor import BuildJob
from binder_service.builds.kubernetes.pod import PodTemplate, build_pod
from binder_service.images.registry.client import MANIFEST_TYPES, split_image
from binder_service.providers import ResolvedRepo
from binder_service.settings import Settings
from tests.support.fake_k8s import FakeKube, write_kubeconfig
from tests.support.gitserve import make_repo
from tests.support.kube_schemas import assert_valid
from tests.support.oci import prepare_bundle
from tests.support.pss import baseline_violations
from tests.support.registry_servers import RegistryServer
from tests.support.runc_kubelet import RuncKubelet
from tests.support.service import running_service, sse_messages

ROOT = Path(__file__).resolve().parents[2]
SECCOMP_ROOT = ROOT / "chart" / "files" / "seccomp"  # stands in for the kubelet's seccomp directory
RUNC = shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin")
PUSH_SECRET = "push-creds"
NS = "builds"
WRITES = ["/home/builder", "/tmp", "/var/tmp"]  # where a build writes, on the read-only root

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="runc runs containers as root here"),
    pytest.mark.skipif(RUNC is None, reason="runc is not installed (scripts/install-system.sh installs it)"),
]


@dataclass(frozen=True)
class Builder:
    rootfs: Path
    config: dict[str, Any]  # the image's Config: Entrypoint, Env, WorkingDir, User
    image: str


def _docker(
    *args: str, timeout: float = 120, stdout: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": world.DOCKER_HOST, "DOCKER_BUILDKIT": "1"}  # secrets need BuildKit
    return subprocess.run(
        [world.DOCKER_CLI, *args],
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def builder(world_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builder]:
    """The builder image from this tree's Dockerfile.builder, its root filesystem unpacked for runc (file
    capabilities kept)."""
    image = "binder-test/builder:latest"
    secret = ["--secret", f"id=pip_cert,src={world.CA_BUNDLE}"] if world.CA_BUNDLE.exists() else []
    built = _docker(
        "build", "-f", str(ROOT / "Dockerfile.builder"), "--build-arg", f"BASE_IMAGE={world.PYTHON_IMAGE}",
        *secret, "-t", image, str(ROOT), timeout=1800,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    config = json.loads(_docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    rootfs = tmp_path_factory.mktemp("builder") / "rootfs"
    rootfs.mkdir()
    container = _docker("create", image).stdout.strip()
    try:
        export = subprocess.Popen(
            [world.DOCKER_CLI, "export", container],
            env={**os.environ, "DOCKER_HOST": world.DOCKER_HOST},
            stdout=subprocess.PIPE,
        )
        untar = subprocess.run(
            ["tar", "-x", "--xattrs", "--xattrs-include=*", "-C", str(rootfs), "-f", "-"],
            stdin=export.stdout,
            capture_output=True,
            timeout=600,
            check=False,
        )
        assert export.wait(600) == 0
        assert untar.returncode == 0, untar.stderr
    finally:
        _docker("rm", "-f", container)
    yield Builder(rootfs=rootfs, config=config, image=image)
    shutil.rmtree(rootfs, ignore_errors=True)


@dataclass
class Run:
    code: int
    log: str


def run_pod(pod: dict[str, Any], builder: Builder, tmp: Path, auth: dict[str, Any] | None) -> Run:
    """Run the pod's container under runc, with fresh volumes as a kubelet makes them; `auth` is the push
    Secret's config.json."""
    secrets = {PUSH_SECRET: {"config.json": json.dumps(auth or {"auths": {}})}}
    bundle = prepare_bundle(
        pod, builder.config, rootfs=builder.rootfs, dest=tmp, seccomp_root=SECCOMP_ROOT, secrets=secrets
    )
    assert RUNC is not None
    state = tmp / "runc-state"
    name = f"bsw-{uuid.uuid4().hex[:12]}"
    try:
        done = subprocess.run(
            [RUNC, "--root", str(state), "run", "--bundle", str(bundle), name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        subprocess.run(
            [RUNC, "--root", str(state), "delete", "--force", name], capture_output=True, check=False
        )
    return Run(done.returncode, done.stdout + done.stderr)


def _pod(
    repo_url: str, commit: str, image: str, *, args: list[str] | None = None, memory: str = "3Gi"
) -> dict[str, Any]:
    repo = ResolvedRepo(provider="git", repo_url=repo_url, ref="main", commit=commit, build_slug=repo_url)
    job = BuildJob(build_id="runc", image_name=image, repo=repo, push=True, layer_cache=True)
    template = PodTemplate(
        image="unused",
        docker_socket="/unused",
        deadline=900,
        allowed_git_protocols=["git", "https"],
        engine="buildah",
        builder_image="binder-test/builder:latest",
        seccomp_profile="binder-service-buildah.json",
        storage_limit="5Gi",
        push_secret=PUSH_SECRET,
        resources={"limits": {"memory": memory, "cpu": "2"}},
    )
    pod = build_pod(job, template)
    assert_valid(pod)
    assert baseline_violations(pod) == []
    if args is not None:
        pod["spec"]["containers"][0]["args"] = args
    return pod


def _auth(reg: RegistryServer) -> dict[str, Any]:
    token = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    return {"auths": {reg.host: {"auth": token}}}


def test_the_build_pod_spec_builds_and_pushes_under_runc(
    builder: Builder,
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    basic_auth_registry: RegistryServer,
    tmp_path: Path,
) -> None:
    reg = basic_auth_registry
    name = f"runc-{uuid.uuid4().hex[:8]}"
    sha = make_repo(
        git_root, name, {"Dockerfile": f"FROM {registry_base_image}\nRUN echo {name} > /id && id -u\n"}
    )
    image = f"{reg.host}/binder-{name}:{sha}"
    ran = run_pod(_pod(git_daemon_url + name, sha, image), builder, tmp_path, _auth(reg))
    assert ran.code == 0, ran.log[-4000:]
    assert "pushing" in ran.log
    _, repository, tag = split_image(image)
    assert reg.username
    assert reg.password
    r = httpx.get(
        f"{reg.url}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES},
        auth=(reg.username, reg.password),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"


def test_the_pods_memory_limit_binds_the_run_steps(
    builder: Builder,
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    basic_auth_registry: RegistryServer,
    tmp_path: Path,
) -> None:
    """A RUN step runs in the build container, so the container's memory limit is the step's: a step that
    needs 300 MB fails under a 200Mi limit and passes under 1Gi."""
    reg = basic_auth_registry
    name = f"runc-mem-{uuid.uuid4().hex[:8]}"
    step = "RUN dd if=/dev/zero of=/dev/null bs=300M count=1"  # dd holds one 300 MB block
    sha = make_repo(git_root, name, {"Dockerfile": f"FROM {registry_base_image}\n{step}\n"})
    image = f"{reg.host}/binder-{name}:{sha}"
    runs = {}
    for memory in ("200Mi", "1Gi"):
        (tmp_path / memory).mkdir()
        pod = _pod(git_daemon_url + name, sha, image, memory=memory)
        runs[memory] = run_pod(pod, builder, tmp_path / memory, _auth(reg))
    assert runs["200Mi"].code != 0, runs["200Mi"].log[-3000:]
    failed = runs["200Mi"].log
    assert "dd if=/dev/zero" in failed  # it failed at that step
    assert "subprocess exited on killed" in failed, failed[-3000:]  # buildah chroot: the step was killed
    assert runs["1Gi"].code == 0, runs["1Gi"].log[-3000:]


def test_the_container_has_only_what_the_spec_grants(builder: Builder, tmp_path: Path) -> None:
    probe = "; ".join(
        [
            "grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status",
            "echo keys=$(stat -c %t.%T /proc/keys)",  # a masked file is /dev/null (device 1.3)
            "echo dev=$(ls /dev | sort | tr '\\n' ' ')",
            # readOnlyRootFilesystem: the root is read-only; HOME, /tmp and /var/tmp (the emptyDir) are not
            "echo root=$(awk '$5 == \"/\" {print $6}' /proc/self/mountinfo | cut -d, -f1)",
            *(f"echo w{d}=$(touch {d}/probe 2>/dev/null && echo yes || echo no)" for d in WRITES),
        ]
    )
    pod = _pod("git://127.0.0.1:1/x", "0" * 40, "127.0.0.1:1/x:1", args=["/bin/sh", "-c", probe])
    ran = run_pod(pod, builder, tmp_path, None)
    assert ran.code == 0, ran.log
    seen = dict(line.split(":", 1) if ":" in line else line.split("=", 1) for line in ran.log.splitlines())
    status = {k: v.split() for k, v in seen.items()}
    assert status["Uid"] == ["1000"] * 4
    assert status["Gid"] == ["1000"] * 4
    assert "1000" in status["Groups"]
    bounding = (1 << 6) | (1 << 7) | (1 << 18)  # CAP_SETGID, CAP_SETUID, CAP_SYS_CHROOT
    assert int(status["CapBnd"][0], 16) == bounding
    assert int(status["CapEff"][0], 16) == 0  # a non-root process keeps none of them
    assert int(status["CapAmb"][0], 16) == 0
    assert status["NoNewPrivs"] == ["0"]  # allowPrivilegeEscalation: true
    assert status["Seccomp"] == ["2"]  # filtered
    assert status["keys"] == ["1.3"], ran.log  # masked, as containerd masks it
    assert status["root"] == ["ro"], ran.log
    assert {d: status[f"w{d}"] for d in WRITES} == {d: ["yes"] for d in WRITES}, ran.log
    assert set(status["dev"]) <= {"core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm"} | {
        "stderr", "stdin", "stdout", "tty", "urandom", "zero",
    }  # fmt: skip


@pytest.mark.parametrize("escalation", [True, False], ids=["as-the-pod-says", "no_new_privs"])
def test_rootless_buildah_needs_privilege_escalation(
    builder: Builder, tmp_path: Path, escalation: bool
) -> None:
    """`restricted` requires allowPrivilegeEscalation: false (no_new_privs): newuidmap's file capabilities
    then no longer apply, and buildah's user namespace holds one id only (the builder's), too few for an
    image whose files belong to several users (root and jovyan, in every repo2docker image)."""
    script = "buildah unshare cat /proc/self/uid_map"
    pod = _pod("git://127.0.0.1:1/x", "0" * 40, "127.0.0.1:1/x:1", args=["/bin/sh", "-c", script])
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = escalation
    ran = run_pod(pod, builder, tmp_path, None)
    assert ran.code == 0, ran.log[-2000:]
    mapped = [line.split() for line in ran.log.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    if escalation:
        assert mapped == [["0", "1000", "1"], ["1", "100000", "65536"]], ran.log
    else:
        assert mapped == [["0", "1000", "1"]], ran.log
        assert "newuidmap: write to uid_map failed: Operation not permitted" in ran.log


def test_the_service_builds_through_a_buildah_pod_under_runc(
    builder: Builder,
    make_settings: Callable[..., Settings],
    git_root: Path,
    git_daemon_url: str,
    registry_base_image: str,
    tmp_path: Path,
) -> None:
    """All of it: a build request to the service (executor kubernetes, engine buildah); the executor
    creates the build pod through the API fake (strict schemas); the fake's kubelet runs it under runc as
    its spec says; the log streams back as events to `ready`, and the image is in the registry."""
    name = f"runc-e2e-{uuid.uuid4().hex[:8]}"
    make_repo(git_root, name, {"Dockerfile": f"FROM {registry_base_image}\nRUN echo {name} > /id\n"})
    settings = make_settings(
        executor="kubernetes",
        engine="buildah",
        k8s_namespace=NS,
        k8s_api_timeout=5.0,
        k8s_builder_image=builder.image,
        k8s_push_secret=PUSH_SECRET,
        k8s_build_resources={"limits": {"memory": "2Gi", "cpu": "2"}},
        build_timeout=900.0,
    )
    work = tmp_path / "kubelet"
    work.mkdir()
    kubelet = RuncKubelet({builder.image: (builder.rootfs, builder.config)}, work, SECCOMP_ROOT)
    with FakeKube(kubelet=kubelet) as kube:
        kube.secrets[(NS, PUSH_SECRET)] = {"config.json": json.dumps({"auths": {}})}
        environ = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        environ["KUBECONFIG"] = str(write_kubeconfig(kube.url, tmp_path / "kubeconfig"))
        with running_service(settings, environ=environ) as url:
            r = httpx.post(
                f"{url}api/v1/builds", json={"repo": git_daemon_url + name, "ref": "main"}, timeout=30
            )
            assert r.status_code == 201, r.text
            build = r.json()
            events = sse_messages(str(httpx.URL(url).join(build["events_url"])), timeout=900)
        assert kube.rejected == []
        (created,) = kube.kinds("create")
        assert kube.pods(NS) == []  # deleted when done
    assert events[-1]["phase"] == "ready", events[-5:]
    phases = [e["phase"] for e in events]
    assert phases.index("building") < phases.index("pushing") < phases.index("ready")
    assert baseline_violations(created.body) == []
    assert created.body["spec"]["containers"][0]["image"] == builder.image
    _, repository, tag = split_image(build["image_name"])
    registry = "http://" + build["image_name"].split("/", 1)[0]
    got = httpx.get(
        f"{registry}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=10
    )
    assert got.status_code == 200, got.text
