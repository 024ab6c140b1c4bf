"""The embedded default executor: repo2docker as a local process against the engine at DOCKER_HOST."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import logging
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from ..engines import OUT_OF_MEMORY
from ..errors import BuildError, BuilderUnavailable, BuildOutOfMemory, EngineUnavailable
from ..events import Phase
from ..images.store import EngineImageStore
from ..security.child_env import child_environ
from ..security.credentials import GitCredentials
from ..units import binary_size
from . import durable
from .buildah_local import BuildahStorage
from .cgroups import BuildCgroup, BuildCgroups
from .executor import Adoptee, BuildJob, Emit
from .process_groups import KILL_GRACE, end_group, stop_group
from .r2d_args import r2d_args, r2d_config
from .r2d_logs import Progress, read_lines
from .workdirs import Workdir, sweep_abandoned

log = logging.getLogger(__name__)

BUILDER_PROBE_TIMEOUT = 60  # `repo2docker --version` imports a lot; a slow machine takes seconds


class LocalExecutor:
    """Runs `repo2docker --json-logs [--push] -- <url>` and reads every line it prints as an event."""

    def __init__(
        self,
        *,
        docker_host: str,
        docker_config: Path | None,
        command: list[str],
        extra_args: list[str],
        allowed_git_protocols: list[str],
        allow_local: bool,
        environ: Mapping[str, str],
        docker_timeout: float,
        git_credentials: GitCredentials | None = None,
        state_dir: Path | None = None,
        buildah: BuildahStorage | None = None,
        engine_config: str = "",
        cgroups: BuildCgroups | None = None,
    ) -> None:
        # With a state directory, builds outlive the service: output to a per-build log file there,
        # followed (and adopted after a restart) instead of read from a pipe (docs/state.md).
        self._state_dir = state_dir
        # settings.engine = "buildah": repo2docker runs our engine plugin over buildah, no Docker engine.
        self._buildah = buildah
        self._engine_config = engine_config  # repo2docker config lines for the engine (its limits)
        # The per-build limits (engine buildah): each build in a cgroup of its own (cgroups.py).
        self._cgroups = cgroups
        self._docker_host = docker_host
        self._command = _locate(command, environ)
        self._extra_args = extra_args
        self._credentials = git_credentials or None
        # Mode 0700: ours alone. Removed when the executor closes, and at interpreter exit if it never
        # does (an exception during start-up): nothing of it outlives the process.
        # What an earlier service's builds left when it died (their processes gone too): remove it.
        sweep_abandoned()
        self._own = Workdir()
        self._workdir = self._own.path
        self._cleanup = self._own.remove
        atexit.register(self._cleanup)
        self._env = self._build_env(environ, docker_config, allowed_git_protocols, allow_local)
        self._engine = EngineImageStore(docker_host, timeout=docker_timeout)
        if buildah is not None:
            buildah.sweep()  # containers and mounts of builds that died with an earlier service
        if cgroups is not None:
            cgroups.prepare()
            cgroups.sweep()  # the cgroups of those builds
        self._builder_ok = False

    @property
    def workdir(self) -> Path:
        return self._workdir

    def _build_env(
        self,
        environ: Mapping[str, str],
        docker_config: Path | None,
        protocols: list[str],
        allow_local: bool,
    ) -> dict[str, str]:
        env = child_environ(environ)  # our own configuration never reaches repo2docker
        if self._credentials:
            for key in [k for k in env if k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))]:
                del env[key]  # GIT_CONFIG_COUNT (per build) is ours: no inherited entry may fall in its range
        if self._buildah is None:
            env["DOCKER_HOST"] = self._docker_host
        else:  # no Docker engine, and registry credentials come per build (buildah_local.py)
            for name in ("DOCKER_HOST", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE"):
                env.pop(name, None)
        env["GIT_TERMINAL_PROMPT"] = "0"  # a private repository fails instead of waiting for a password
        env["GIT_ALLOW_PROTOCOL"] = ":".join([*protocols, *(["file"] if allow_local else [])])
        env["PYTHONUNBUFFERED"] = "1"
        if docker_config is not None and self._buildah is None:
            # The docker CLI reads `$DOCKER_CONFIG/config.json`; give it a directory holding just that file.
            conf_dir = self._workdir / "docker-config"
            conf_dir.mkdir(mode=0o700, exist_ok=True)
            (conf_dir / "config.json").unlink(missing_ok=True)
            (conf_dir / "config.json").symlink_to(docker_config.resolve())
            env["DOCKER_CONFIG"] = str(conf_dir)
        return env

    @contextlib.asynccontextmanager
    async def _build_dir(self, job: BuildJob) -> AsyncIterator[tuple[dict[str, str], tuple[int, ...]]]:
        """A private directory for one build, the environment that points the build at it, and the file
        descriptors (locks) its process keeps.

        repo2docker clones into `TMPDIR`, and git reads the operator's credentials from a 0600 file here:
        both are removed when the build ends, however it ends (done, failed, cancelled, timed out), so no
        clone and no secret outlives the process that needed it.
        """
        root = Path(tempfile.mkdtemp(prefix=f"build-{job.build_id}-", dir=self._workdir))
        try:
            tmp = root / "tmp"
            tmp.mkdir(mode=0o700)
            env = {**self._env, "TMPDIR": str(tmp)}
            if self._credentials:
                # git asks this helper for a password: the secrets stay in a 0600 file, never on a command
                # line (ps) or in a URL (repo2docker's logs, the image's labels).
                store = root / "git-credentials"
                fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(self._credentials.store_text())
                env["GIT_CONFIG_COUNT"] = "1"
                env["GIT_CONFIG_KEY_0"] = "credential.helper"
                env["GIT_CONFIG_VALUE_0"] = f"store --file={shlex.quote(str(store))}"
            if self._buildah is None:
                yield env, (self._own.fd,)
            else:
                async with self._buildah.for_build(job.image_name, job.build_id, root) as buildah:
                    yield {**env, **buildah.env}, (self._own.fd, buildah.lock_fd)
        finally:
            await asyncio.to_thread(shutil.rmtree, root, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def _cgroup(self, build_id: str, *, adopted: bool = False) -> AsyncIterator[BuildCgroup | None]:
        """Build `build_id`'s cgroup (a new one, or the one an adopted build runs in); when the build
        ends, what is left in it is killed, an out-of-memory kill noted, and the cgroup removed."""
        if self._cgroups is None:
            yield None
            return
        make = self._cgroups.of if adopted else self._cgroups.create
        try:
            cgroup = await asyncio.to_thread(make, build_id)
        except OSError as e:
            raise BuilderUnavailable(f"cannot make the build's cgroup (its limits): {e}") from e
        try:
            yield cgroup
        finally:
            await asyncio.to_thread(cgroup.end, build_id)

    def _config_file(self, content_provider: str, repo_url: str = "") -> Path:
        config = r2d_config(content_provider, repo_url) + self._engine_config  # the name checked first
        digest = hashlib.sha256(config.encode()).hexdigest()[:12]  # Dataverse's differs per installation
        path = self._workdir / f"r2d-{content_provider}-{digest}.py"
        if not path.exists():
            path.write_text(config)
        return path

    def argv(self, job: BuildJob) -> list[str]:
        """The repo2docker command line. The repository URL comes after `--`: never an option."""
        config = str(self._config_file(job.repo.content_provider, job.repo.repo_url))
        engine = "docker" if self._buildah is None else "buildah"
        return [*self._command, "--config", config, *r2d_args(job, self._extra_args, engine=engine)]

    async def _spawn(
        self, argv: list[str], env: dict[str, str], fds: tuple[int, ...]
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self._workdir,  # never a directory holding someone else's repo2docker_config.py
            env=env,
            start_new_session=True,  # its own process group, so a stop reaches docker/git children too
            pass_fds=fds,  # the workdir's (and storage's) lock: held while the build lives (workdirs.py)
        )

    async def run(self, job: BuildJob, emit: Emit) -> None:
        self._check_installed()
        # repo2docker would only say "The docker commandline client must be installed": ask the engine.
        await self._engine_check()
        emit(Phase.FETCHING, f"Fetching {job.repo.build_slug} at {job.repo.commit[:12]}\n")
        progress = Progress(emit)
        async with self._build_dir(job) as (env, fds), self._cgroup(job.build_id) as cgroup:
            argv = self.argv(job) if cgroup is None else cgroup.enter(self.argv(job))
            if self._state_dir is not None:
                code = await self._run_durable(job, argv, env, fds, progress, self._state_dir)
            else:
                code = await self._run_piped(job, argv, env, fds, progress)
        if code != 0:
            await self._engine_lost()
            raise _failed(progress.failure(f"repo2docker exited with code {code}"), cgroup)
        progress.flush()

    async def _run_piped(
        self, job: BuildJob, argv: list[str], env: dict[str, str], fds: tuple[int, ...], progress: Progress
    ) -> int:
        try:
            proc = await self._spawn(argv, env, fds)
        except FileNotFoundError as e:
            raise BuilderUnavailable(self._missing()) from e
        log.info("build started", extra={"build_id": job.build_id, "image": job.image_name, "pid": proc.pid})
        try:
            assert proc.stdout is not None
            async for raw in read_lines(proc.stdout):
                progress.feed(raw)
            return await proc.wait()
        finally:
            # Whatever ended the build, nothing it started outlives it (its group may have members
            # that outlive repo2docker itself, e.g. left by a wrapper command).
            await stop_group(proc)

    async def _run_durable(
        self,
        job: BuildJob,
        argv: list[str],
        env: dict[str, str],
        fds: tuple[int, ...],
        progress: Progress,
        state_dir: Path,
    ) -> int:
        files = durable.BuildFiles.for_build(state_dir, job.build_id)
        await asyncio.to_thread(files.create)
        proc = await durable.spawn(argv, files, env=env, cwd=self._workdir, pass_fds=fds)
        log.info("build started", extra={"build_id": job.build_id, "image": job.image_name, "pid": proc.pid})
        try:
            if job.on_process is not None:
                await job.on_process(proc.pid, str(files.log))
            code = await durable.follow(files, progress.feed, lambda: proc.returncode is None, proc.wait())
            await proc.wait()
        finally:
            await stop_group(proc)
        return code if code is not None else (proc.returncode or -1)

    async def adopt(self, job: BuildJob, adoptee: Adoptee, emit: Emit) -> None:
        """Follow a build a previous service process started: replay its log (the first `skip` events
        were stored already), follow it to its exit status, or stop it when cancelled or out of time."""
        files = durable.BuildFiles.of_log(adoptee.log_path)
        seen = 0

        def replay(phase: Phase, message: str) -> None:
            nonlocal seen
            seen += 1
            if seen > adoptee.skip:
                emit(phase, message)

        progress = Progress(replay)

        def alive() -> bool:
            return durable.is_build_process(adoptee.pid, files)

        if not alive() and files.exit_code() is None:
            raise BuildError(
                "the build's process ended while binder-service was down (stopped with it, or the machine "
                "restarted) before it finished; ask again to build"
            )
        try:
            async with self._cgroup(job.build_id, adopted=True) as cgroup:
                try:
                    code = await durable.follow(files, progress.feed, alive)
                finally:
                    if alive():  # cancelled or out of time: nothing of the build outlives it
                        await end_group(adoptee.pid, KILL_GRACE)
        finally:
            if self._buildah is not None:  # its storage is free now: what the build left goes
                await asyncio.to_thread(self._buildah.sweep)
        if code is None:
            raise BuildError("the build's process was stopped before it finished")
        if code != 0:
            await self._engine_lost()
            raise _failed(progress.failure(f"repo2docker exited with code {code}"), cgroup)
        progress.flush()

    async def _engine_check(self) -> None:
        if self._buildah is not None:
            await self._buildah.check()
        else:
            await self._engine.check()

    async def _engine_lost(self) -> None:
        """EngineUnavailable if the engine went away during the build (the real reason it failed)."""
        if self._buildah is not None:
            return  # no daemon to lose: buildah ran in the build's own process
        try:
            await self._engine.check()
        except EngineUnavailable as e:
            lost = f"the Docker engine became unreachable during the build: {e.message}"
            raise EngineUnavailable(lost) from e

    def _missing(self) -> str:
        return f"repo2docker is not installed here ({self._command[0]} not found)"

    def _check_installed(self) -> None:
        exe = self._command[0] if self._command else ""
        found = exe if os.sep in exe else shutil.which(exe, path=self._env.get("PATH"))
        if not found or not os.access(found, os.X_OK):
            raise BuilderUnavailable(self._missing())

    async def _check_runs(self) -> None:
        """`repo2docker --version` answers (once: a working builder stays working)."""
        if self._builder_ok:
            return
        proc = await asyncio.create_subprocess_exec(
            *self._command,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self._workdir,
            env=self._env,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(BUILDER_PROBE_TIMEOUT):
                out, _ = await proc.communicate()
        except TimeoutError:
            out = b"no answer within %d s" % BUILDER_PROBE_TIMEOUT
        finally:
            await stop_group(proc, grace=1)
        if proc.returncode != 0:
            last = (out.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1][:300]
            raise BuilderUnavailable(f"repo2docker does not run here ({self._command[0]} --version: {last})")
        self._builder_ok = True

    async def check(self) -> None:
        """The builder is installed and runs, and the engine answers (the health check)."""
        self._check_installed()
        await self._check_runs()
        await self._engine_check()

    async def aclose(self) -> None:
        await self._engine.aclose()
        self._cleanup()  # the workdir: config files, and nothing secret (credentials live per build)
        atexit.unregister(self._cleanup)
        if self._cgroups is not None:
            await asyncio.to_thread(self._cgroups.close)


def _failed(reason: str, cgroup: BuildCgroup | None = None) -> BuildError:
    if reason.startswith(OUT_OF_MEMORY):  # the buildah engine's word for a step killed at the limit
        return BuildOutOfMemory(reason.removeprefix("Error: "))
    if cgroup is not None and cgroup.out_of_memory and cgroup.limits.memory is not None:
        limit = binary_size(cgroup.limits.memory)
        return BuildOutOfMemory(
            f"out of memory: the build was killed at its memory limit of {limit} ({reason})"
        )
    return BuildError(reason)


def _locate(command: list[str], environ: Mapping[str, str]) -> list[str]:
    """`repo2docker` from PATH, else the one installed beside this Python (same virtualenv)."""
    if not command or os.sep in command[0] or shutil.which(command[0], path=environ.get("PATH")):
        return command
    sibling = Path(sys.executable).parent / command[0]
    return [str(sibling), *command[1:]] if sibling.exists() else command
