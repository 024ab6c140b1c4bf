"""scripts/release.sh, run once for the module as the release workflow runs it (images pushed to a registry
of the test's own), and every artifact it made used as an operator would: the wheels installed into a clean
venv, the packaged chart linted and rendered from its .tgz, the service image serving /health with the
Kubernetes executor (the chart's mode), the hub image importing binder_service_hub. Nothing is cached from
an earlier run: the script rebuilds everything (images with --no-cache)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import pytest
import yaml

import release as release_script
import world
from tests.support.fake_k8s import FakeKube, write_kubeconfig
from tests.support.net import free_port
from tests.support.registry_servers import RegistryServer, start_registry

ROOT = Path(__file__).resolve().parents[2]
# Not the tree's version: seeing it everywhere proves the script stamped it, and a pre-release checks
# the two spellings (PEP 440 for packages and images, SemVer for the chart).
VERSION, CHART_VERSION = "9.8.7rc1", "9.8.7-rc1"
CHART_URL = "https://charts.example.org/binder-service/"
# The release's bases here: nothing can be pulled, so world's Debian Python image stands in for
# python:3.12-slim and world's JupyterHub image for z2jh's k8s-hub (JupyterHub in a Python, user 1000).
SERVICE_BASE, HUB_BASE = world.PYTHON_IMAGE, world.SINGLEUSER_IMAGE
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


@dataclass(frozen=True)
class Release:
    dist: Path
    output: str
    images: dict[str, str]  # service / hub / builder -> name:tag@digest, as images.txt lists them
    registry: RegistryServer

    def python(self, pattern: str) -> Path:
        (found,) = (self.dist / "python").glob(pattern)
        return found


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": world.DOCKER_HOST}
    return subprocess.run(
        [world.DOCKER_CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def tag_of(ref: str) -> str:
    return ref.split("@", 1)[0]


@pytest.fixture(scope="session")
def release(world_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    world.ensure_python_image()
    world.ensure_singleuser_image()
    reg_root = tmp_path_factory.mktemp("release-registry")
    registry = start_registry(reg_root)
    dist = tmp_path_factory.mktemp("release") / "dist"
    prefix = f"{registry.host}/release-{uuid.uuid4().hex[:8]}"
    argv = [str(ROOT / "scripts" / "release.sh"), f"v{VERSION}", "--dist", str(dist)]
    argv += ["--image-prefix", prefix, "--push", "--service-base", SERVICE_BASE, "--hub-base", HUB_BASE]
    argv += ["--chart-url", CHART_URL]
    if world.CA_BUNDLE.exists():  # pip inside the image builds reaches PyPI only trusting the host's CAs
        argv += ["--pip-cert", str(world.CA_BUNDLE)]
    env = {**os.environ, "DOCKER_HOST": world.DOCKER_HOST, "RELEASE_PYTHON": sys.executable}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1500, check=False)
    lines = (dist / "images.txt").read_text().split() if (dist / "images.txt").exists() else []
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        images = dict(zip(["service", "hub", "builder"], lines, strict=True))
        yield Release(dist=dist, output=proc.stdout, images=images, registry=registry)
    finally:
        # The images are big: they leave the engine and the registry with the test.
        for ref in lines:
            docker("rmi", "-f", tag_of(ref))
        registry.stop()
        shutil.rmtree(reg_root, ignore_errors=True)


# --- the command ---------------------------------------------------------------------------------------


def test_the_command_makes_every_artifact(release: Release) -> None:
    made = sorted(str(p.relative_to(release.dist)) for p in release.dist.rglob("*") if p.is_file())
    assert made == [
        "SHA256SUMS",
        f"chart/binder-service-{CHART_VERSION}.tgz",
        "chart/index.yaml",
        "images.txt",
        f"python/binder_service-{VERSION}-py3-none-any.whl",
        f"python/binder_service-{VERSION}.tar.gz",
        f"python/binder_service_client-{VERSION}-py3-none-any.whl",
        f"python/binder_service_client-{VERSION}.tar.gz",
        f"python/binder_service_hub-{VERSION}-py3-none-any.whl",
        f"python/binder_service_hub-{VERSION}.tar.gz",
    ]
    sums = (release.dist / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == 8
    for line in sums:
        digest, name = line.split("  ")
        assert hashlib.sha256((release.dist / name).read_bytes()).hexdigest() == digest


def test_images_are_pushed_and_listed_with_their_digests(release: Release) -> None:
    for kind, name in (
        ("service", "binder-service"),
        ("hub", "binder-service-hub"),
        ("builder", "binder-service-builder"),
    ):
        ref = release.images[kind]
        repo_tag, digest = ref.split("@")
        repo, tag = repo_tag.rsplit(":", 1)
        assert repo.endswith(f"/{name}")
        assert tag == VERSION
        assert digest.startswith("sha256:")
        path = repo.removeprefix(release.registry.host + "/")
        for reference in (tag, digest):
            r = httpx.get(
                f"{release.registry.url}/v2/{path}/manifests/{reference}",
                headers={"Accept": MANIFEST_TYPES},
                timeout=30,
            )
            assert r.status_code == 200, (ref, reference, r.text)


def test_the_tree_is_not_stamped(release: Release) -> None:
    """The script stamps a copy: a release never leaves the work tree modified."""
    for rel in [*release_script.VERSION_FILES, *release_script.CLIENT_DEPENDENTS]:
        assert VERSION not in (ROOT / rel).read_text()
    assert CHART_VERSION not in (ROOT / "chart" / "Chart.yaml").read_text()


# --- one version everywhere ----------------------------------------------------------------------------


def _metadata(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.split("\n\n", 1)[0].splitlines() if ": " in line)


def test_versions_match_across_artifacts(release: Release) -> None:
    for project in release_script.PROJECTS:
        stem = project.replace("-", "_")
        with zipfile.ZipFile(release.python(f"{stem}-{VERSION}-*.whl")) as whl:
            text = whl.read(f"{stem}-{VERSION}.dist-info/METADATA").decode()
            meta = _metadata(text)
            init = next(n for n in whl.namelist() if n.endswith(f"{stem}/__init__.py"))
            assert f'__version__ = "{VERSION}"' in whl.read(init).decode()
        assert (meta["Name"], meta["Version"]) == (project, VERSION)
        # The client dependency is this release's, not a folder of the tree it was built from.
        if project != "binder-service-client":
            assert f"Requires-Dist: binder-service-client=={VERSION}\n" in text
            assert "file:" not in text
        with tarfile.open(release.python(f"{stem}-{VERSION}.tar.gz")) as sdist:
            f = sdist.extractfile(f"{stem}-{VERSION}/PKG-INFO")
            assert f is not None
            assert _metadata(f.read().decode())["Version"] == VERSION
    with helm.Chart.load(str(release.dist / "chart" / f"binder-service-{CHART_VERSION}.tgz")) as chart:
        assert (chart.metadata["version"], chart.metadata["appVersion"]) == (CHART_VERSION, VERSION)
    for ref in release.images.values():
        labels = json.loads(
            docker("image", "inspect", "--format", "{{json .Config.Labels}}", tag_of(ref)).stdout
        )
        assert labels["org.opencontainers.image.version"] == VERSION
        assert len(labels["org.opencontainers.image.revision"]) == 40


def test_the_chart_index_serves_the_package(release: Release) -> None:
    index = yaml.safe_load((release.dist / "chart" / "index.yaml").read_text())
    (entry,) = index["entries"]["binder-service"]
    tgz = release.dist / "chart" / f"binder-service-{CHART_VERSION}.tgz"
    assert entry["version"] == CHART_VERSION
    assert entry["appVersion"] == VERSION
    assert entry["urls"] == [f"{CHART_URL}{tgz.name}"]
    assert entry["digest"] == hashlib.sha256(tgz.read_bytes()).hexdigest()


# --- the wheels ----------------------------------------------------------------------------------------


def test_the_wheels_install_into_a_clean_venv_and_import(release: Release, tmp_path: Path) -> None:
    """`--no-deps` into a new venv: the dependencies come from the project's venv (a path entry, so its
    editable installs stay out) and nothing downloads; both packages import from the new venv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    deps = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "project-deps.pth").write_text(deps + "\n")
    wheels = [str(release.python(f"{p.replace('-', '_')}-{VERSION}-*.whl")) for p in release_script.PROJECTS]
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", *wheels]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    probe = (
        "import sys, importlib.metadata as m, binder_service, binder_service_hub, binder_service_client\n"
        "print(binder_service.__file__, binder_service_hub.__file__, binder_service_client.__file__)\n"
        "print(binder_service.__version__, m.version('binder-service'), binder_service_hub.__version__,"
        " binder_service_client.__version__)\n"
        "print(sorted(e.name for e in m.entry_points(group='jupyterhub.spawners')))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # it may name the source folders
    out = subprocess.run(
        [py, "-c", probe], env=clean, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    files, versions, spawners = out.splitlines()
    assert all(f.startswith(site) for f in files.split()), files
    assert versions.split() == [VERSION] * 4
    assert {"binder-docker", "binder-kubernetes"} <= set(json.loads(spawners.replace("'", '"')))
    cli = subprocess.run(
        [venv / "bin" / "binder-service", "--help"], env=clean, capture_output=True, timeout=120
    )
    assert cli.returncode == 0, cli.stderr
    # The hub side alone never pulls in the service's web stack.
    alone = "import sys, binder_service_hub; print('fastapi' in sys.modules)"
    assert (
        subprocess.run(
            [py, "-c", alone], env=clean, capture_output=True, text=True, timeout=120
        ).stdout.strip()
        == "False"
    )


# --- the chart -----------------------------------------------------------------------------------------


def test_the_packaged_chart_lints_and_renders(release: Release) -> None:
    tgz = str(release.dist / "chart" / f"binder-service-{CHART_VERSION}.tgz")
    values: dict[str, Any] = {"config": {"registry_url": "https://registry.example.org"}}
    report = helm.lint(tgz, values, strict=True, namespace="ns1")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == []
    with helm.Chart.load(tgz) as chart:
        rendered = chart.render(values, name="demo", namespace="ns1", is_install=True)
    docs = [
        d for path, text in rendered.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d
    ]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    # The chart's default image is the one this release built (tag = appVersion).
    (svc,) = deployment["spec"]["template"]["spec"]["containers"]
    assert svc["image"].endswith(f"binder-service:{VERSION}")
    assert deployment["metadata"]["labels"]["helm.sh/chart"] == f"binder-service-{CHART_VERSION}"


# --- the images ----------------------------------------------------------------------------------------


def _kubeconfig(kube: FakeKube, path: Path) -> Path:
    write_kubeconfig(kube.url, path)
    path.chmod(0o644)  # the image's user (65532) reads it through the bind mount
    return path


def test_the_service_image_serves_health_with_the_kubernetes_executor(
    release: Release, tmp_path: Path
) -> None:
    """Run as the chart runs it (non-root, read-only root filesystem, /tmp writable, executor=kubernetes):
    it needs kubernetes-asyncio in the image, talks to the (fake) API and the registry, answers /health."""
    port = free_port()
    name = f"release-svc-{uuid.uuid4().hex[:8]}"
    with FakeKube() as kube:
        config = _kubeconfig(kube, tmp_path / "kubeconfig")
        env = {
            "KUBECONFIG": "/etc/kube/config",
            "BINDER_SERVICE_EXECUTOR": "kubernetes",
            "BINDER_SERVICE_K8S_NAMESPACE": "ns1",
            "BINDER_SERVICE_PORT": str(port),
            "BINDER_SERVICE_REGISTRY_URL": release.registry.url,
        }
        run = ["run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp:mode=1777"]
        run += ["-v", f"{config}:/etc/kube/config:ro"]
        run += [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        started = docker(*run, tag_of(release.images["service"]))
        assert started.returncode == 0, started.stderr
        try:
            health = _wait_for_health(f"http://127.0.0.1:{port}", name)
            versions = httpx.get(f"http://127.0.0.1:{port}/versions", timeout=10).json()
        finally:
            logs = docker("logs", name).stderr
            docker("rm", "-f", name)
        assert health.status_code == 200, (health.text, logs[-2000:])
        assert {c["service"]: c["ok"] for c in health.json()["checks"]} == {
            "Kubernetes API": True,
            "Registry": True,
        }
        assert versions["binder-service"] == VERSION
        assert any(seen.method == "GET" and "/namespaces/ns1/pods" in seen.path for seen in kube.requests)
    assert (
        docker(
            "image", "inspect", "--format", "{{.Config.User}}", tag_of(release.images["service"])
        ).stdout.strip()
        == "65532:65532"
    )


def _wait_for_health(url: str, container: str) -> httpx.Response:
    deadline = time.monotonic() + 120
    while True:
        try:
            return httpx.get(f"{url}/health", timeout=10)
        except httpx.TransportError:
            state = docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                raise AssertionError(
                    f"service image did not answer: {docker('logs', container).stderr[-3000:]}"
                ) from None
            time.sleep(0.2)


def test_the_hub_image_has_the_extension_at_the_release_version(release: Release) -> None:
    probe = (
        "import os, sys, importlib.metadata as m, binder_service_hub, binder_service_client, jupyterhub\n"
        "print(binder_service_hub.__version__, m.version('binder-service-client'), os.getuid())\n"
        "print('fastapi' in sys.modules, binder_service_hub.__file__.startswith('/tmp'))\n"
        "print(' '.join(sorted(e.name for e in m.entry_points(group='jupyterhub.spawners'))))\n"
    )
    ref = tag_of(release.images["hub"])
    r = docker("run", "--rm", "--network", "none", "--entrypoint", "python3", ref, "-c", probe)
    assert r.returncode == 0, r.stderr
    first, second, spawners = r.stdout.splitlines()
    assert first.split() == [VERSION, VERSION, "1000"]
    assert second.split() == ["False", "False"]
    assert {"binder-docker", "binder-kubernetes"} <= set(spawners.split())
    hub = docker("run", "--rm", "--network", "none", "--entrypoint", "jupyterhub", ref, "--version")
    assert hub.returncode == 0, hub.stderr
    assert int(hub.stdout.strip().split(".")[0]) >= 5, hub.stdout


def test_the_builder_image_builds_rootless_without_privilege(release: Release) -> None:
    """What buildah's build pods need (docs/kubernetes.md): uid 1000 with subordinate ids, newuidmap and
    newgidmap with file capabilities and no setuid bit, tini as PID 1, buildah and our repo2docker engine."""
    ref = tag_of(release.images["builder"])
    user = docker("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Entrypoint}}", ref)
    assert user.stdout.split(" ", 1) == ["1000:1000", '["/usr/bin/tini","-g","--"]\n']
    script = "; ".join(
        [
            "id -u",
            "getcap /usr/bin/newuidmap /usr/bin/newgidmap",
            "stat -c '%a' /usr/bin/newuidmap /usr/bin/newgidmap",
            "grep '^builder:' /etc/subuid /etc/subgid",
            "buildah --version >/dev/null && echo buildah",
            "repo2docker --version",
        ]
    )
    r = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", ref, "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "1000",
        "/usr/bin/newuidmap cap_setuid=ep",
        "/usr/bin/newgidmap cap_setgid=ep",
        "755",
        "755",
        "/etc/subuid:builder:100000:65536",
        "/etc/subgid:builder:100000:65536",
        "buildah",
        r.stdout.splitlines()[-1],  # repo2docker's version
    ]
