"""buildah on one machine (settings.engine = "buildah"): its storage, a build's credentials, its check.

Storage lives under `<state_dir>/buildah/`, one storage per image repository (`r-<hash>/`, with its own
`storage.conf`): a new commit of a repository reuses every unchanged step from it, as it would from the
Docker engine's cache, and no repository's build sees another's layers. A build holds an exclusive `flock`
on its storage, inherited by its process (as the workdir lock is, workdirs.py), so the lock lasts as long as
the build, even past a restart of the service. A second build of the same repository at the same time gets
a storage of its own for that build (`tmp-<build id>/`, removed after it); fresh storage still reuses the
steps the registry cache holds.

When a build ends, however it ends, the containers it left (a build stopped by a signal leaves its working
container and its mounts) are removed once no process holds the storage; `sweep` does the same at start for
storage whose build died with the service (SIGKILL).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuilderUnavailable
from ..images.docker_config import DockerConfig
from ..images.naming import registry_host
from .buildah_files import LOCK, disk_usage, mounts_under, try_lock, try_lock_probe, unmount_under

log = logging.getLogger(__name__)

__all__ = ["BuildahBuild", "BuildahStorage", "storage_key"]

_TMP = "tmp-"
CLEAN_TIMEOUT = 120.0  # seconds for `buildah rm --all` in one storage
PROBE_TIMEOUT = 30.0
INSTALL_HINT = "install it (Debian: apt-get install buildah uidmap runc; scripts/install-system.sh does)"


def storage_key(image: str) -> str:
    """The storage of `image`'s repository: the same for every tag (commit) of it."""
    repository = image.rpartition(":")[0] if ":" in image.rsplit("/", 1)[-1] else image
    return "r-" + hashlib.sha256(repository.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class BuildahBuild:
    """What one build runs with: environment additions and the storage lock its process inherits."""

    env: dict[str, str]
    lock_fd: int
    storage: Path


class BuildahStorage:
    """The buildah storages of one service, under `root` (`<state_dir>/buildah`)."""

    def __init__(
        self,
        root: Path,
        *,
        command: str = "buildah",
        environ: Mapping[str, str],
        registry_url: str,
        docker_config: Path | None,
        disk_budget: int | None = None,
        build_user: str = "",
    ) -> None:
        self.root = root
        self._budget = disk_budget
        # As root, buildah may run as this unprivileged user instead (rootless: its user namespace).
        self.build_user = build_user
        self._command = command
        self._path = environ.get("PATH", os.defpath)
        self._registry = registry_host(registry_url) if registry_url else ""
        self._docker_config = docker_config
        self._checked = False
        # As root, RUN steps run under runc (namespaces, seccomp, masked /proc), never in a bare chroot:
        # a root process in a chroot can leave it. Not root, buildah runs rootless (a user namespace).
        self.isolation = "oci" if os.geteuid() == 0 and not build_user else "chroot"

    def _user(self) -> tuple[int, int] | None:
        if not self.build_user:
            return None
        try:
            entry = pwd.getpwnam(self.build_user)
        except KeyError:
            raise BuilderUnavailable(
                f"the build user {self.build_user} does not exist: create it (scripts/install-system.sh "
                f"--build-user {self.build_user} does), with ranges in /etc/subuid and /etc/subgid"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _as_user(self, argv: list[str], storage: Path) -> tuple[list[str], dict[str, str]]:
        """`argv` and its environment, run as the build user when there is one."""
        env = {"PATH": self._path, "CONTAINERS_STORAGE_CONF": str(storage / "storage.conf")}
        user = self._user()
        if user is None:
            return argv, env
        # buildah rootless wants a runtime directory of the user's own.
        runtime = storage / "xdg"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.chown(runtime, *user)
        env |= {"HOME": str(storage), "XDG_RUNTIME_DIR": str(runtime)}
        setpriv = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--init-groups", "--"]
        return [*setpriv, *argv], env

    # --- one build ---

    @contextlib.asynccontextmanager
    async def for_build(self, image: str, build_id: str, build_dir: Path) -> AsyncIterator[BuildahBuild]:
        """The storage, credentials and isolation of one build; afterwards, what it left is removed."""
        storage, fd = await asyncio.to_thread(self._acquire, image, build_id)
        try:
            env = {
                "CONTAINERS_STORAGE_CONF": str(storage / "storage.conf"),
                "BUILDAH_ISOLATION": self.isolation,
            }
            auth = await asyncio.to_thread(self._auth_file, build_dir)
            if auth is not None:
                env["REGISTRY_AUTH_FILE"] = str(auth)
            yield BuildahBuild(env=env, lock_fd=fd, storage=storage)
        finally:
            os.close(fd)  # the build's process may still hold the lock (left running for adoption)
            await asyncio.to_thread(self._release, storage)
            if self._budget is not None:
                await asyncio.to_thread(self.prune, self._budget)

    def _acquire(self, image: str, build_id: str) -> tuple[Path, int]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        shared = self._prepare(self.root / storage_key(image))
        fd = try_lock(shared)
        if fd is not None:
            os.utime(shared / LOCK)  # last use: what a disk budget removes first
            return shared, fd
        if not build_id.isalnum():
            raise ValueError(f"not a build id: {build_id[:64]!r}")
        own = self._prepare(self.root / f"{_TMP}{build_id}")
        fd = try_lock(own)
        if fd is None:
            raise RuntimeError(f"buildah storage {own} is locked by another process")
        return own, fd

    def _prepare(self, storage: Path) -> Path:
        storage.mkdir(mode=0o700, exist_ok=True)
        user = self._user()
        if user is not None:
            os.chown(storage, *user)  # the build user's: buildah writes there as that user
        conf = storage / "storage.conf"
        # native overlay works as root and rootless here (fuse-overlayfs does not); rootless buildah reads
        # rootless_storage_path, not graphroot, and keeps its run state under XDG_RUNTIME_DIR (`xdg/`)
        text = (
            f'[storage]\ndriver = "overlay"\ngraphroot = "{storage / "root"}"\n'
            f'runroot = "{storage / "run"}"\nrootless_storage_path = "{storage / "root"}"\n'
        )
        if not conf.is_file() or conf.read_text() != text:
            conf.write_text(text)
        (storage / LOCK).touch(mode=0o600, exist_ok=True)
        return storage

    def _auth_file(self, build_dir: Path) -> Path | None:
        """The push registry's credentials in a 0600 file of the build's own directory (removed with it):
        buildah reads it from REGISTRY_AUTH_FILE; nothing secret on a command line or in the environment."""
        if not self._registry or self._docker_config is None:
            return None
        creds = DockerConfig.load(self._docker_config).credentials_for(self._registry)
        if creds is None:
            return None
        entry: dict[str, str] = {
            "auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        }
        if creds.identity_token:
            entry["identitytoken"] = creds.identity_token
        path = build_dir / "registry-auth.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"auths": {self._registry: entry}}, f)
        return path

    def _release(self, storage: Path) -> None:
        """Remove what the build left in `storage` if nobody holds it any more (else its build still runs,
        and whoever sees it end, or the next start, does)."""
        fd = try_lock(storage)
        if fd is None:
            return
        try:
            self._clean(storage)
            if storage.name.startswith(_TMP):
                shutil.rmtree(storage, ignore_errors=True)
        finally:
            os.close(fd)

    def _clean(self, storage: Path) -> None:
        conf = storage / "storage.conf"
        if not conf.is_file():  # buildah would fall back to its default storage: never touch that
            unmount_under(storage)
            return
        argv, env = self._as_user([self._command, "rm", "--all"], storage)
        try:
            proc = subprocess.run(
                argv, env=env, capture_output=True, timeout=CLEAN_TIMEOUT, check=False,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if proc.returncode != 0:
                log.warning(
                    "buildah rm --all failed",
                    extra={"storage": str(storage), "error": proc.stdout.decode(errors="replace")[-300:]},
                )
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("buildah rm --all failed", extra={"storage": str(storage), "error": str(e)})
        unmount_under(storage)  # the storage driver's own mount, left by a process that was killed
        # what the engine handed over to a build user (context, credentials) when its build was killed
        for handed in [*storage.glob("build-*"), *storage.glob("inspect-*")]:
            shutil.rmtree(handed, ignore_errors=True)

    # --- the whole service ---

    def sweep(self) -> list[Path]:
        """Clean every storage nobody holds (builds that died with an earlier service); returns them."""
        cleaned: list[Path] = []
        if not self.root.is_dir():
            return cleaned
        for storage in sorted(self.root.iterdir()):
            if not (storage / LOCK).exists() or not _left_something(storage):
                continue
            if try_lock_probe(storage):
                self._release(storage)
                cleaned.append(storage)
        return cleaned

    def prune(self, budget: int) -> list[Path]:
        """Remove whole repository storages, least recently used first, until all of them take at most
        `budget` bytes; never one a build holds. Returns the removed ones."""
        if not self.root.is_dir():
            return []
        storages = [p for p in self.root.iterdir() if (p / LOCK).exists()]
        sizes = {p: disk_usage(p) for p in storages}
        total = sum(sizes.values())
        removed: list[Path] = []
        for storage in sorted(storages, key=lambda p: (p / LOCK).stat().st_mtime):
            if total <= budget:
                break
            fd = try_lock(storage)
            if fd is None:
                continue  # a running build's
            try:
                self._clean(storage)
                shutil.rmtree(storage, ignore_errors=True)
            finally:
                os.close(fd)
            total -= sizes[storage]
            removed.append(storage)
        if removed:
            log.info(
                "buildah storage over its budget: removed", extra={"count": len(removed), "bytes": total}
            )
        return removed

    def containers(self, storage: Path) -> list[str]:
        """The ids of buildah's containers in `storage` (tests, diagnostics)."""
        argv, env = self._as_user([self._command, "containers", "--quiet", "--notruncate"], storage)
        proc = subprocess.run(
            argv, env=env, capture_output=True, timeout=PROBE_TIMEOUT, check=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        return proc.stdout.decode().split()

    async def check(self) -> None:
        """buildah runs here and can use its storage; BuilderUnavailable saying how to fix it otherwise."""
        await asyncio.to_thread(self._check)

    def _check(self) -> None:
        found = shutil.which(self._command, path=self._path)
        if not found:
            raise BuilderUnavailable(
                f"buildah is not installed here ({self._command} not found): {INSTALL_HINT}"
            )
        if self.isolation == "oci" and not shutil.which("runc", path=self._path):
            raise BuilderUnavailable(
                f"runc is not installed here (buildah runs RUN steps with it as root): {INSTALL_HINT}"
            )
        user = self._user()  # the build user exists
        if os.geteuid() != 0 or self.build_user:
            _check_rootless(self.build_user or pwd.getpwuid(os.geteuid()).pw_name)
        if self.build_user and not shutil.which("setpriv", path=self._path):
            raise BuilderUnavailable("setpriv is not installed here (util-linux): the build user needs it")
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            if user is not None:
                # the build user passes through to its storages and lists nothing
                os.chmod(self.root, 0o711)  # noqa: S103
            probe = self.root / ".write-probe"
            probe.touch()
            probe.unlink()
        except OSError as e:
            raise BuilderUnavailable(f"buildah's storage {self.root} is not writable: {e.strerror}") from e
        if self._checked:
            return
        try:
            proc = subprocess.run(
                [found, "--version"],
                capture_output=True, timeout=PROBE_TIMEOUT, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BuilderUnavailable(f"buildah does not answer ({found} --version)") from None
        if proc.returncode != 0:
            last = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines() or ["no output"]
            raise BuilderUnavailable(f"buildah does not run here ({found} --version: {last[-1][:300]})")
        self._checked = True


def _check_rootless(user: str) -> None:
    """A user without subordinate id ranges cannot build rootless; neither can a kernel without user
    namespaces."""
    uid = str(pwd.getpwnam(user).pw_uid)
    for name in ("subuid", "subgid"):
        try:
            lines = Path(f"/etc/{name}").read_text().splitlines()
        except OSError:
            lines = []
        if not any(line.split(":", 1)[0] in (user, uid) for line in lines):
            raise BuilderUnavailable(
                f"user {user} has no range in /etc/{name}, which rootless buildah needs: add one, e.g. "
                f"`usermod --add-subuids 300000-365535 --add-subgids 300000-365535 {user}`"
            )
    try:
        limit = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        limit = 1
    if limit == 0:
        raise BuilderUnavailable(
            "this kernel allows no user namespaces (user.max_user_namespaces = 0), which rootless buildah "
            "needs: set the sysctl user.max_user_namespaces above 0"
        )


def _left_something(storage: Path) -> bool:
    """Containers or mounts in `storage`, or a build's own storage (removed whole)."""
    if storage.name.startswith(_TMP) or mounts_under(storage) or any(storage.glob("build-*")):
        return True
    try:
        listed = (storage / "root" / "overlay-containers" / "containers.json").read_text().strip()
    except OSError:
        return False
    return listed not in ("", "[]")
