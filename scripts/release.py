"""Build every artifact of a binder-service release into one directory (`dist/`), then check them.

    scripts/release.sh 1.2.0 --image-prefix ghcr.io/org --push

What it makes, all stamped with one version (the tree itself is never modified: it is copied first):
    dist/python/   binder_service-V-py3-none-any.whl, binder_service-V.tar.gz,
                   binder_service_client-V-py3-none-any.whl, binder_service_client-V.tar.gz,
                   binder_service_hub-V-py3-none-any.whl, binder_service_hub-V.tar.gz   (upload to PyPI)
    dist/chart/    binder-service-V.tgz + index.yaml                                   (a chart repository)
    dist/images.txt  the service, hub and builder images, one reference a line       (pushed with --push)
    dist/SHA256SUMS  checksums of the files above

Nothing is reused from an earlier run: dist/'s artifacts are removed first and images build with --no-cache,
so a step that broke cannot hide behind an old result. Needs `build` and `helm-python-sdk` (the dev extra)
and a Docker engine with buildx (DOCKER_HOST).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE_BASE = "python:3.12-slim-bookworm"
# z2jh's hub image: JupyterHub 5 and KubeSpawner 7, what binder-service-hub supports.
HUB_BASE = "quay.io/jupyterhub/k8s-hub:4.4.0"
SERVICE_IMAGE, HUB_IMAGE = "binder-service", "binder-service-hub"
# Build pods with engine buildah run it: repo2docker, buildah and the service's engine (Dockerfile.builder).
BUILDER_IMAGE = "binder-service-builder"
# The three Python projects (distribution name -> folder): the service and the hub side both depend on
# the client, neither on the other.
PROJECTS = {
    "binder-service": ".",
    "binder-service-client": "src/client",
    "binder-service-hub": "hub_extension",
}
# The files that carry the version, and the one line in each that does.
VERSION_FILES = {
    "src/binder_service/__init__.py": r'^__version__ = "[^"]*"$',
    "src/client/binder_service_client/__init__.py": r'^__version__ = "[^"]*"$',
    "hub_extension/binder_service_hub/__init__.py": r'^__version__ = "[^"]*"$',
}
# Projects that depend on the client; from a clone they name its folder, a release pins its version.
CLIENT_DEPENDENTS = ("pyproject.toml", "hub_extension/pyproject.toml")
# A docker build or push can be slow (PyPI inside the build) but must not hang a release forever.
DOCKER_TIMEOUT = 1800.0
CHECK_TIMEOUT = 120.0


# Two builds run at once; their lines must not interleave.
_PRINT = threading.Lock()


class ReleaseError(RuntimeError):
    """A step of the release failed; the message says which and why."""


@dataclass(frozen=True)
class Version:
    """One release version in the spellings each artifact needs."""

    python: str  # PEP 440, canonical: 1.2.0, 1.2.0rc1 (packages, image tags, the chart's appVersion)
    chart: str  # SemVer 2 as Helm wants it: 1.2.0, 1.2.0-rc1

    @classmethod
    def parse(cls, text: str) -> Version:
        """`1.2.0`, `1.2.0rc1`, `1.2.0a1`, `1.2.0b2`; a leading `v` (a git tag) is dropped."""
        m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:(a|b|rc)(\d+))?", text.strip())
        if m is None:
            raise ReleaseError(
                f"version {text!r} is not of the form X.Y.Z or X.Y.Z(a|b|rc)N (e.g. 1.2.0, 1.2.0rc1)"
            )
        major, minor, patch, pre, num = m.groups()
        # No leading zeros: both PEP 440 normalisation and SemVer would rewrite them.
        release = ".".join(str(int(p)) for p in (major, minor, patch))
        suffix = f"{pre}{int(num)}" if pre else ""
        return cls(python=release + suffix, chart=release + (f"-{suffix}" if suffix else ""))


@dataclass(frozen=True)
class Options:
    version: Version
    dist: Path
    image_prefix: str
    push: bool
    service_base: str
    hub_base: str
    hub_user: str
    chart_url: str | None
    merge_index: Path | None
    pip_cert: Path | None
    images: bool


def parse_args(argv: Sequence[str]) -> Options:
    p = argparse.ArgumentParser(
        prog="scripts/release.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("version", help="the release version, e.g. 1.2.0 or v1.2.0 (a tag)")
    p.add_argument("--dist", type=Path, default=ROOT / "dist", help="output directory (default: dist/)")
    p.add_argument(
        "--image-prefix",
        default="",
        help="registry and namespace of the images, e.g. ghcr.io/org; the images are "
        f"<prefix>/{SERVICE_IMAGE}:<version>, <prefix>/{HUB_IMAGE}:<version> and "
        f"<prefix>/{BUILDER_IMAGE}:<version>",
    )
    p.add_argument("--push", action="store_true", help="push the images (needs --image-prefix)")
    p.add_argument(
        "--service-base", default=SERVICE_BASE, help=f"service image base (default {SERVICE_BASE})"
    )
    p.add_argument(
        "--hub-base", default=HUB_BASE, help=f"hub image base, z2jh's hub image (default {HUB_BASE})"
    )
    p.add_argument("--hub-user", default="1000", help="the user the hub image runs as (z2jh's jovyan: 1000)")
    p.add_argument("--chart-url", help="absolute URL the chart repository is served from (index.yaml urls)")
    p.add_argument(
        "--merge-index", type=Path, help="the published index.yaml: its other versions are kept in ours"
    )
    p.add_argument(
        "--pip-cert",
        type=Path,
        default=Path(os.environ["PIP_CERT"]) if os.environ.get("PIP_CERT") else None,
        help="CA bundle pip trusts inside image builds (default: $PIP_CERT), given as a build secret",
    )
    p.add_argument("--no-images", dest="images", action="store_false", help="packages and chart only")
    a = p.parse_args(argv)
    try:
        version = Version.parse(a.version)
    except ReleaseError as e:
        p.error(str(e))
    if a.push and not a.image_prefix:
        p.error("--push needs --image-prefix (where to push)")
    if a.push and not a.images:
        p.error("--push and --no-images contradict each other")
    if a.merge_index is not None and not a.merge_index.is_file():
        p.error(f"--merge-index {a.merge_index}: no such file")
    return Options(
        version=version,
        dist=a.dist.resolve(),
        image_prefix=a.image_prefix.rstrip("/"),
        push=a.push,
        service_base=a.service_base,
        hub_base=a.hub_base,
        hub_user=a.hub_user,
        chart_url=a.chart_url,
        merge_index=a.merge_index,
        pip_cert=a.pip_cert,
        images=a.images,
    )


def _run(argv: Sequence[str], *, timeout: float, cwd: Path | None = None) -> str:
    """Run a command; its output only when it fails (a release log stays readable)."""
    with _PRINT:
        print("+", " ".join(argv), flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ReleaseError(
            f"{argv[0]} {argv[1] if len(argv) > 1 else ''} timed out after {timeout} s"
        ) from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode(errors="replace")[-4000:]
        raise ReleaseError(f"{' '.join(argv[:3])} ... failed ({proc.returncode}):\n{out}")
    with _PRINT:
        print(f"  {time.monotonic() - started:.1f} s: {' '.join(argv[:4])} ...", flush=True)
    return proc.stdout.decode(errors="replace")


# --- the source ------------------------------------------------------------------------------------


def stage(root: Path, dest: Path) -> dict[str, str]:
    """Copy the files git knows (tracked or not ignored) to `dest`; the revision they came from."""
    listed = _run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], timeout=60
    )
    for rel in sorted(set(filter(None, listed.split("\0")))):
        src = root / rel
        if src.is_file():  # tracked files deleted in the work tree are listed too
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    revision = _run(["git", "-C", str(root), "rev-parse", "HEAD"], timeout=60).strip()
    dirty = bool(_run(["git", "-C", str(root), "status", "--porcelain"], timeout=60).strip())
    if dirty:
        print("warning: the work tree has uncommitted changes; they are in this release", file=sys.stderr)
    return {"revision": revision, "dirty": "true" if dirty else "false"}


def stamp(src: Path, version: Version) -> None:
    """Write the version into the staged copy: every package's `__version__`, the chart's version fields,
    and the client dependency of the service and the hub side pinned to this release."""
    for rel, pattern in VERSION_FILES.items():
        _replace_one(src / rel, pattern, f'__version__ = "{version.python}"')
    chart = src / "chart" / "Chart.yaml"
    _replace_one(chart, r"^version: .*$", f"version: {version.chart}")
    _replace_one(chart, r"^appVersion: .*$", f'appVersion: "{version.python}"')
    # A folder reference cannot go to PyPI, and a release needs its own client, not any.
    for rel in CLIENT_DEPENDENTS:
        _replace_one(
            src / rel,
            r'"binder-service-client @ [^"]*"',
            f'"binder-service-client=={version.python}"',
            flags=0,
        )


def _replace_one(path: Path, pattern: str, line: str, *, flags: int = re.MULTILINE) -> None:
    text = path.read_text()
    new, count = re.subn(pattern, line, text, flags=flags)
    if count != 1:
        raise ReleaseError(f"{path.name}: expected one line matching {pattern!r}, found {count}")
    path.write_text(new)


# --- the artifacts ---------------------------------------------------------------------------------


def build_python(src: Path, out: Path) -> list[Path]:
    """sdist, then the wheel from that sdist (so a file missing from the sdist breaks the build here)."""
    # Each project into its own directory first, all at once (each waits mostly on its build env).
    outs = [out.with_name(f"{out.name}.{i}") for i in range(len(PROJECTS))]
    _parallel(
        [
            [sys.executable, "-m", "build", "--outdir", str(o), str(src / folder)]
            for o, folder in zip(outs, PROJECTS.values(), strict=True)
        ]
    )
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    for o in outs:
        for f in sorted(o.iterdir()):
            made.append(Path(shutil.move(f, out / f.name)))
        o.rmdir()
    return made


def _parallel(commands: Sequence[list[str]], timeout: float = 600) -> None:
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        for done in [pool.submit(_run, argv, timeout=timeout) for argv in commands]:
            done.result()


def build_chart(src: Path, out: Path, opts: Options) -> Path:
    import helm_python as helm

    out.mkdir(parents=True, exist_ok=True)
    tgz = Path(helm.package(src / "chart", destination=out))
    merge = str(opts.merge_index) if opts.merge_index else None
    helm.repo_index_generate(out, base_url=opts.chart_url, merge=merge)
    return tgz


def image_refs(opts: Options) -> dict[str, str]:
    prefix = f"{opts.image_prefix}/" if opts.image_prefix else ""
    tag = opts.version.python
    return {
        "service": f"{prefix}{SERVICE_IMAGE}:{tag}",
        "hub": f"{prefix}{HUB_IMAGE}:{tag}",
        "builder": f"{prefix}{BUILDER_IMAGE}:{tag}",
    }


def build_images(src: Path, opts: Options, source: dict[str, str]) -> dict[str, str]:
    refs = image_refs(opts)
    docker = shutil.which("docker") or "docker"
    labels = {
        "org.opencontainers.image.version": opts.version.python,
        "org.opencontainers.image.revision": source["revision"],
        "org.opencontainers.image.licenses": "BSD-3-Clause",
    }
    # The CA bundle goes in as a secret: it is never part of a layer or the image's history.
    secret = ["--secret", f"id=pip_cert,src={opts.pip_cert}"] if opts.pip_cert else []
    commands = []
    # All from the tree's root: the hub image needs the client (src/client/) beside hub_extension/. The
    # builder image starts from the service's base (a Debian with Python).
    for kind, dockerfile, base, extra in (
        ("service", src / "Dockerfile", opts.service_base, []),
        ("builder", src / "Dockerfile.builder", opts.service_base, []),
        (
            "hub",
            src / "hub_extension" / "Dockerfile",
            opts.hub_base,
            ["--build-arg", f"HUB_USER={opts.hub_user}"],
        ),
    ):
        argv = [docker, "build", "--no-cache", "--progress=plain", "-f", str(dockerfile), "-t", refs[kind]]
        argv += ["--build-arg", f"BASE_IMAGE={base}", *extra, *secret]
        argv += [
            f"--label={k}={v}" for k, v in {**labels, "org.opencontainers.image.base.name": base}.items()
        ]
        commands.append([*argv, str(src)])
    _parallel(commands, timeout=DOCKER_TIMEOUT)
    return refs


def push_images(refs: dict[str, str]) -> dict[str, str]:
    """Push; each reference gains the digest the registry stored (`name:tag@sha256:...`)."""
    docker = shutil.which("docker") or "docker"
    pinned: dict[str, str] = {}
    for kind, ref in refs.items():
        _run([docker, "push", "-q", ref], timeout=DOCKER_TIMEOUT)
        digests = json.loads(
            _run([docker, "image", "inspect", "--format", "{{json .RepoDigests}}", ref], timeout=60)
        )
        name = ref.rsplit(":", 1)[0]
        digest = next((d.split("@", 1)[1] for d in digests if d.split("@", 1)[0] == name), None)
        if digest is None:
            raise ReleaseError(f"{ref} was pushed but the engine knows no digest for it")
        pinned[kind] = f"{ref}@{digest}"
    return pinned


# --- checks ----------------------------------------------------------------------------------------


def _python_metadata(path: Path) -> tuple[str, str]:
    """(name, version) from a wheel's METADATA or an sdist's PKG-INFO."""
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            text = z.read(meta).decode()
    else:
        with tarfile.open(path) as t:
            member = next(
                m for m in t.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
            )
            f = t.extractfile(member)
            assert f is not None
            text = f.read().decode()
    fields = dict(re.findall(r"^(Name|Version): (.*)$", text, flags=re.MULTILINE))
    return fields["Name"], fields["Version"]


IMAGE_PROBES = {
    # The installed distributions and the modules agree, in the image's own Python; the service image
    # carries nothing of the hub side (a word other than the version fails the check).
    "service": "import importlib.metadata as m, importlib.util as u, binder_service, binder_service_client\n"
    "print(binder_service.__version__, m.version('binder-service'))\n"
    "print(binder_service_client.__version__, m.version('binder-service-client'))\n"
    "if u.find_spec('binder_service_hub'): print('binder_service_hub is installed')\n",
    "hub": "import importlib.metadata as m, binder_service_hub, binder_service_client\n"
    "print(binder_service_hub.__version__, m.version('binder-service-hub'))\n"
    "print(binder_service_client.__version__, m.version('binder-service-client'))\n",
    # The engine repo2docker loads for `--engine buildah` imports, and is this release's.
    "builder": "import importlib.metadata as m, binder_service\n"
    "print(binder_service.__version__, m.version('binder-service'))\n"
    "(engine,) = m.entry_points(group='repo2docker.engines', name='buildah')\n"
    "engine.load()\n"
    "print(engine.dist.version)\n",
}


def check(opts: Options, python: list[Path], chart: Path, refs: dict[str, str]) -> None:
    """Every artifact says the same version, or the release fails here."""
    want = opts.version.python
    names = sorted(_python_metadata(p) for p in python)
    expected = sorted((project, want) for project in PROJECTS for _ in ("wheel", "sdist"))
    if names != expected:
        raise ReleaseError(f"python artifacts are {names}, expected {expected}")
    import helm_python as helm

    with helm.Chart.load(str(chart)) as loaded:
        meta = loaded.metadata
    if (meta["version"], meta["appVersion"]) != (opts.version.chart, want):
        raise ReleaseError(f"chart says version {meta['version']}, appVersion {meta['appVersion']}")
    docker = shutil.which("docker") or "docker"
    for kind, ref in refs.items():
        label = _run(
            [
                docker,
                "image",
                "inspect",
                "--format",
                '{{index .Config.Labels "org.opencontainers.image.version"}}',
                ref,
            ],
            timeout=60,
        ).strip()
        probe = [
            docker,
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            ref,
            "-c",
            IMAGE_PROBES[kind],
        ]
        seen = _run(probe, timeout=CHECK_TIMEOUT).split()
        if label != want or set(seen) != {want}:
            raise ReleaseError(f"{ref}: label {label!r}, installed {seen}, expected {want}")


def _clean(dist: Path) -> None:
    for name in ("python", "chart", *(f"python.{i}" for i in range(len(PROJECTS)))):
        shutil.rmtree(dist / name, ignore_errors=True)
    for name in ("images.txt", "SHA256SUMS"):
        (dist / name).unlink(missing_ok=True)


def _checksums(dist: Path, files: list[Path]) -> None:
    lines = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(dist)}\n" for f in sorted(files)]
    (dist / "SHA256SUMS").write_text("".join(lines))


def release(opts: Options) -> dict[str, str]:
    """The whole release; returns the image references written to images.txt."""
    _clean(opts.dist)
    opts.dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="binder-release-") as tmp:
        src = Path(tmp) / "src"
        source = stage(ROOT, src)
        stamp(src, opts.version)
        # Packages, chart and images need nothing of each other: all at once (the images, the longest,
        # wait mostly on pip inside their builds). A failure is raised once every part has ended.
        with ThreadPoolExecutor(max_workers=3) as pool:
            python_f = pool.submit(build_python, src, opts.dist / "python")
            chart_f = pool.submit(build_chart, src, opts.dist / "chart", opts)
            images_f = pool.submit(build_images, src, opts, source) if opts.images else None
            python, chart = python_f.result(), chart_f.result()
            refs = images_f.result() if images_f is not None else {}
    check(opts, python, chart, refs)
    if opts.push:
        refs = push_images(refs)
    if opts.images:
        (opts.dist / "images.txt").write_text("".join(f"{ref}\n" for ref in refs.values()))
    _checksums(opts.dist, [*python, chart, opts.dist / "chart" / "index.yaml"])
    return refs


def main(argv: Sequence[str]) -> int:
    opts = parse_args(argv)
    try:
        refs = release(opts)
    except ReleaseError as e:
        print(f"release: {e}", file=sys.stderr)
        return 1
    print(f"release {opts.version.python} in {opts.dist}:")
    for path in sorted(p for p in opts.dist.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(opts.dist)}")
    for ref in refs.values():
        print(f"  image {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
