"""repo2docker's container engine over buildah: builds without a daemon (`repo2docker --engine buildah`).

Registered as the entry point `repo2docker.engines: buildah`. repo2docker calls `build` in two shapes: a
tar `fileobj` holding the context and a generated Dockerfile (its buildpacks), or `path` + `dockerfile`
(its Docker buildpack). Either way this runs `buildah bud` in the build's own process tree (no daemon, so
a build's resource limits bind its RUN steps), then `buildah push` when asked.

What the caller's environment decides (set by binder-service's local executor, or a build pod):

- `CONTAINERS_STORAGE_CONF`: where buildah keeps images and layers (buildah's own variable).
- `REGISTRY_AUTH_FILE`: a 0600 auth file with the push registry's credentials (buildah's own variable);
  credentials never appear on a command line.
- `BUILDAH_ISOLATION`: `oci` (runc: the RUN steps get their own PID, mount, IPC and UTS namespaces,
  seccomp and masked /proc; root only here) or `chroot` (the default: what works rootless and in a pod).

Loopback registries are reached without TLS, as Docker does, through a registries.conf for this build
that marks just them `insecure`; every other registry keeps TLS verification.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from repo2docker.engine import BuildError, ContainerEngine, Image, ImageLoadError
from traitlets import Float, Int, Unicode, default

from ..images.naming import cache_repository, reference_host
from ..units import binary_size, is_loopback
from . import OUT_OF_MEMORY

__all__ = ["PUSH_MARK", "BuildahEngine", "registries_conf"]

# Said before `buildah push`: binder-service's log reader switches to the pushing phase on it.
PUSH_MARK = "pushing {tag} with buildah\n"
SYSTEM_REGISTRIES_CONF = Path("/etc/containers/registries.conf")
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)
_ERROR = re.compile(r"^(?:Error|error): ")
_V1_TABLE = re.compile(r"^\s*\[registries\.", re.MULTILINE)
_KILLED = re.compile(r"exit status 137$")  # SIGKILL: what the kernel's OOM killer sends
CPU_PERIOD = 100_000  # microseconds: the CFS period CPU limits are a quota of


def from_images(dockerfile: str) -> list[str]:
    """The images a Dockerfile's stages start FROM (as written; build-arg expressions included)."""
    return _FROM.findall(dockerfile)


def registries_conf(hosts: Iterable[str], base: str) -> str | None:
    """`base` (the registries.conf in force) plus an `insecure` entry per loopback host it does not
    configure already; None when no host needs one. A v1-format `base` cannot be extended (mixing
    formats is refused by buildah): None, and TLS stays required."""
    wanted = sorted({h for h in hosts if is_loopback(h) and f'"{h}"' not in base})
    if not wanted or _V1_TABLE.search(base):
        return None
    entries = "".join(f'\n[[registry]]\nlocation = "{h}"\ninsecure = true\n' for h in wanted)
    return base.rstrip("\n") + "\n" + entries


def _limit_args(limits: Mapping[str, Any]) -> list[str]:
    # repo2docker's names (docker-py's) -> buildah's flags; applied with `oci` isolation only.
    flags = {"memory": "--memory", "memswap": "--memory-swap", "cpushares": "--cpu-shares"}
    args = [f"{flags[k]}={v}" for k, v in limits.items() if k in flags and v]
    if limits.get("cpusetcpus"):
        args.append(f"--cpuset-cpus={limits['cpusetcpus']}")
    return args


class BuildahEngine(ContainerEngine):  # type: ignore[misc]  # repo2docker ships no type information
    """Builds with `buildah bud`, pushes with `buildah push`; no daemon, no socket."""

    string_output = True  # build() yields log lines and raises on failure

    command = Unicode("buildah", help="The buildah executable.", config=True)
    isolation = Unicode(
        help="Isolation of RUN steps: `oci` or `chroot`. Default: $BUILDAH_ISOLATION, else chroot.",
        config=True,
    )
    network = Unicode("host", help="Network of RUN steps: `host` or `none`.", config=True)
    memory_limit = Int(
        0,
        help="Bytes of memory (swap included) each RUN step may use; 0: no limit. Needs `oci` isolation.",
        config=True,
    )
    cpu_limit = Float(
        0.0, help="CPUs each RUN step may use; 0: no limit. Needs `oci` isolation.", config=True
    )
    run_as = Unicode(
        "",
        help="Run buildah as this unprivileged user (rootless; repo2docker runs as root). Its storage "
        "(CONTAINERS_STORAGE_CONF's directory) must be the user's; the build's context, registries.conf and "
        "auth file are handed over in a directory of the user's own there.",
        config=True,
    )

    @default("isolation")
    def _isolation_default(self) -> str:
        return os.environ.get("BUILDAH_ISOLATION") or "chroot"

    def build(
        self,
        *,
        push: bool = False,
        load: bool = False,
        buildargs: Mapping[str, str] | None = None,
        cache_from: list[str] | None = None,
        container_limits: Mapping[str, Any] | None = None,
        tag: str = "",
        custom_context: bool = False,
        dockerfile: str = "",
        fileobj: Any = None,
        path: str = "",
        labels: Mapping[str, str] | None = None,
        platform: str | None = None,
        **kwargs: Any,
    ) -> Iterator[str]:
        """Build `tag` (and push it when `push`); yields buildah's output lines; raises BuildError (or
        ImageLoadError for the push) with buildah's own error line."""
        with ExitStack() as stack:
            user = _user(self.run_as) if self.run_as else None
            if user is None:
                private = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="buildah-engine-")))
            else:  # beside the user's storage: everything buildah reads must be the user's to read
                private = Path(tempfile.mkdtemp(prefix="build-", dir=_storage_dir()))
                stack.callback(shutil.rmtree, private, True)
            source = Path(path or ".")
            recipe = Path(dockerfile) if os.path.isabs(dockerfile) else source / (dockerfile or "Dockerfile")
            if fileobj is not None:
                context = private / "context"
                context.mkdir()
                with tarfile.open(fileobj=fileobj) as tar:
                    tar.extractall(context, filter="data")  # the data filter checks members
                recipe = context / (dockerfile or "Dockerfile")
            elif user is not None:
                context = private / "context"  # a copy the user may read (the checkout is root's, 0700)
                shutil.copytree(source, context, symlinks=True)
                recipe = context / recipe.relative_to(source)
            else:
                context = source
            env = self._environment(private, tag, cache_from or [], recipe)
            if user is not None:
                env = _hand_over(private, user, env)
            argv = [
                *self._bud_args(buildargs, cache_from or [], container_limits, tag, labels, platform, push)
            ]
            argv = self._as_user([*argv, "--file", str(recipe), str(context)])
            try:
                yield from _run(argv, env, BuildError)
            except BuildError as e:
                if self.memory_limit and _KILLED.search(str(e)):
                    # The last error line, so the build's reason (binder-service: build_out_of_memory).
                    reason = (
                        f"{OUT_OF_MEMORY}a RUN step was killed at the build's memory limit of "
                        f"{binary_size(self.memory_limit)} ({e})"
                    )
                    yield reason + "\n"
                    raise BuildError(reason) from None
                raise
            if push and tag:
                yield PUSH_MARK.format(tag=tag)
                push_argv = self._as_user([self.command, "push", tag, f"docker://{tag}"])
                yield from _run(push_argv, env, ImageLoadError)

    def _as_user(self, argv: list[str]) -> list[str]:
        if not self.run_as:
            return argv
        uid, gid = _user(self.run_as)
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--", *argv]

    def _bud_args(
        self,
        buildargs: Mapping[str, str] | None,
        cache_from: list[str],
        limits: Mapping[str, Any] | None,
        tag: str,
        labels: Mapping[str, str] | None,
        platform: str | None,
        push: bool,
    ) -> list[str]:
        args = [
            self.command, "bud",
            "--format", "docker",  # Docker manifests, as the Docker engine pushes (OCI otherwise)
            "--layers",  # every step an image: the local and registry layer caches work step by step
            "--force-rm",  # intermediate containers go even when a step fails
            "--isolation", self.isolation,
            "--network", self.network,
        ]  # fmt: skip
        if tag:
            args += ["--tag", tag]
        for key, value in (buildargs or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        args += _limit_args(limits or {})
        if self.memory_limit:  # the operator's, over repo2docker's (which it no longer sets)
            args += [f"--memory={self.memory_limit}", f"--memory-swap={self.memory_limit}"]
        if self.cpu_limit:
            args += [f"--cpu-period={CPU_PERIOD}", f"--cpu-quota={round(self.cpu_limit * CPU_PERIOD)}"]
        if platform:
            args += ["--platform", platform]
        # repo2docker passes tagged images; buildah's cache is a repository of its own per image
        # repository (a tag is refused), filled step by step with --cache-to.
        own = cache_repository(tag) if tag else None
        sources = [cache_repository(ref) for ref in cache_from]
        if sources:
            args += ["--cache-from", own if own in sources else sources[0]]
            if push and own:
                args += ["--cache-to", own]
        return args

    def _environment(self, private: Path, tag: str, cache_from: list[str], recipe: Path) -> dict[str, str]:
        env = dict(os.environ)
        try:
            bases = from_images(recipe.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            bases = []  # buildah will say the Dockerfile is missing
        refs = [tag, *(cache_repository(ref) for ref in cache_from), *bases]
        hosts = {h for ref in refs if ref and (h := reference_host(ref))}
        current = Path(env.get("CONTAINERS_REGISTRIES_CONF") or SYSTEM_REGISTRIES_CONF)
        base = current.read_text(encoding="utf-8") if current.is_file() else ""
        conf = registries_conf(hosts, base)
        if conf is not None:
            path = private / "registries.conf"
            path.write_text(conf, encoding="utf-8")
            env["CONTAINERS_REGISTRIES_CONF"] = str(path)
        if self.registry_credentials:
            # repo2docker's own way (CONTAINER_ENGINE_REGISTRY_CREDENTIALS): into a 0600 auth file.
            creds = self.registry_credentials
            token = base64.b64encode(f"{creds['username']}:{creds['password']}".encode()).decode()
            auth = private / "auth.json"
            fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"auths": {creds["registry"]: {"auth": token}}}, f)
            env["REGISTRY_AUTH_FILE"] = str(auth)
        env.pop("CONTAINER_ENGINE_REGISTRY_CREDENTIALS", None)  # buildah does not need it
        return env

    def inspect_image(self, image: str) -> Image | None:
        """The image's configuration, None when buildah's storage does not have it."""
        env = None
        private = None
        if self.run_as:
            private = Path(tempfile.mkdtemp(prefix="inspect-", dir=_storage_dir()))
            env = _hand_over(private, _user(self.run_as), dict(os.environ))
        try:
            proc = subprocess.run(
                self._as_user([self.command, "inspect", "--type", "image", image]),
                capture_output=True,
                check=False,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            if private is not None:
                shutil.rmtree(private, ignore_errors=True)
        if proc.returncode != 0:
            return None
        data = json.loads(proc.stdout.decode("utf-8", "replace"))
        config = dict((data.get("OCIv1") or {}).get("config") or {})
        config.setdefault("WorkingDir", "")  # repo2docker reads it; docker always sets it
        return Image(tags=[image], config=config)


def _user(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise BuildError(f"the build user {name!r} does not exist") from None
    return entry.pw_uid, entry.pw_gid


def _storage_dir() -> Path:
    conf = os.environ.get("CONTAINERS_STORAGE_CONF")
    if not conf:
        raise BuildError("run_as needs CONTAINERS_STORAGE_CONF (the build user's storage)")
    return Path(conf).parent


_KEPT = ("PATH", "LANG", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF")


def _hand_over(private: Path, user: tuple[int, int], env: dict[str, str]) -> dict[str, str]:
    """Give `private` (context, registries.conf, a copy of the auth file) to the build user; the
    environment buildah runs with as that user: only what it needs."""
    auth = env.get("REGISTRY_AUTH_FILE")
    if auth and not Path(auth).is_relative_to(private):
        shutil.copyfile(auth, private / "registry-auth.json")
        os.chmod(private / "registry-auth.json", 0o600)
        auth = str(private / "registry-auth.json")
    (private / "tmp").mkdir(mode=0o700, exist_ok=True)
    # the storage's run state, shared with binder-service's clean-up of that storage (buildah_local.py)
    runtime = Path(env["CONTAINERS_STORAGE_CONF"]).parent / "xdg"
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.chown(runtime, *user)
    for top, dirs, files in os.walk(private):
        for name in [*dirs, *files]:
            os.chown(os.path.join(top, name), *user, follow_symlinks=False)
    os.chown(private, *user)
    os.chmod(private, 0o700)
    return {
        **{k: env[k] for k in _KEPT if k in env},
        **({"REGISTRY_AUTH_FILE": auth} if auth else {}),
        "HOME": str(private),
        "XDG_RUNTIME_DIR": str(runtime),
        "TMPDIR": str(private / "tmp"),
        "BUILDAH_ISOLATION": "chroot",
    }


def _run(argv: list[str], env: dict[str, str], error: type[Exception]) -> Iterator[str]:
    """buildah's output, line by line; `error` with its last error line when it fails. The child stays
    in our process group: whatever stops the build stops it too."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
    last_error = ""
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            if _ERROR.match(line):
                last_error = line.strip()
            yield line
        code = proc.wait()
    finally:
        if proc.poll() is None:  # the caller stopped reading: the build is abandoned
            proc.kill()
            proc.wait()
    if code != 0:
        raise error(last_error or f"{argv[0]} {argv[1]} exited with code {code}")
