"""The embedded default executor: repo2docker as a local process against the engine at DOCKER_HOST."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..child_env import child_environ
from ..credentials import GitCredentials
from ..errors import BuildError
from ..events import Phase
from ..image_store import EngineImageStore
from .executor import BuildJob, Emit
from .r2d_args import r2d_args, r2d_config
from .r2d_logs import Progress, read_lines

log = logging.getLogger(__name__)

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when a build is stopped


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
    ) -> None:
        self._docker_host = docker_host
        self._command = _locate(command, environ)
        self._extra_args = extra_args
        self._workdir = Path(tempfile.mkdtemp(prefix="binder-service-"))  # mode 0700: ours alone
        self._env = self._build_env(
            environ, docker_config, allowed_git_protocols, allow_local, git_credentials
        )
        self._engine = EngineImageStore(docker_host, timeout=docker_timeout)

    def _build_env(
        self,
        environ: Mapping[str, str],
        docker_config: Path | None,
        protocols: list[str],
        allow_local: bool,
        credentials: GitCredentials | None = None,
    ) -> dict[str, str]:
        env = child_environ(environ)  # our own configuration never reaches repo2docker
        if credentials:
            for key in [k for k in env if k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))]:
                del env[key]  # GIT_CONFIG_COUNT below is ours: no inherited entry may fall into its range
            # git asks this helper for a password: the secrets stay in a 0600 file in our private workdir,
            # never on a command line (ps) or in a URL (repo2docker's logs, the image's labels).
            store = self._workdir / "git-credentials"
            store.unlink(missing_ok=True)
            fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(credentials.store_text())
            env["GIT_CONFIG_COUNT"] = "1"
            env["GIT_CONFIG_KEY_0"] = "credential.helper"
            env["GIT_CONFIG_VALUE_0"] = f"store --file={shlex.quote(str(store))}"
        env["DOCKER_HOST"] = self._docker_host
        env["GIT_TERMINAL_PROMPT"] = "0"  # a private repository fails instead of waiting for a password
        env["GIT_ALLOW_PROTOCOL"] = ":".join([*protocols, *(["file"] if allow_local else [])])
        env["PYTHONUNBUFFERED"] = "1"
        if docker_config is not None:
            # The docker CLI reads `$DOCKER_CONFIG/config.json`; give it a directory holding just that file.
            conf_dir = self._workdir / "docker-config"
            conf_dir.mkdir(mode=0o700, exist_ok=True)
            (conf_dir / "config.json").unlink(missing_ok=True)
            (conf_dir / "config.json").symlink_to(docker_config.resolve())
            env["DOCKER_CONFIG"] = str(conf_dir)
        return env

    def _config_file(self, content_provider: str, repo_url: str = "") -> Path:
        config = r2d_config(content_provider, repo_url)  # checks the name before it becomes a file name
        digest = hashlib.sha256(config.encode()).hexdigest()[:12]  # Dataverse's differs per installation
        path = self._workdir / f"r2d-{content_provider}-{digest}.py"
        if not path.exists():
            path.write_text(config)
        return path

    def argv(self, job: BuildJob) -> list[str]:
        """The repo2docker command line. The repository URL comes after `--`: never an option."""
        config = str(self._config_file(job.repo.content_provider, job.repo.repo_url))
        return [*self._command, "--config", config, *r2d_args(job, self._extra_args)]

    async def _spawn(self, job: BuildJob) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(job),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self._workdir,  # never a directory holding someone else's repo2docker_config.py
            env=self._env,
            start_new_session=True,  # its own process group, so a stop reaches docker/git children too
        )

    async def run(self, job: BuildJob, emit: Emit) -> None:
        emit(Phase.FETCHING, f"Fetching {job.repo.build_slug} at {job.repo.commit[:12]}\n")
        try:
            proc = await self._spawn(job)
        except FileNotFoundError as e:
            raise BuildError(f"repo2docker is not installed here ({self._command[0]} not found)") from e
        log.info("build started", extra={"build_id": job.build_id, "image": job.image_name, "pid": proc.pid})
        progress = Progress(emit)
        try:
            assert proc.stdout is not None
            async for raw in read_lines(proc.stdout):
                progress.feed(raw)
            code = await proc.wait()
        except BaseException:
            await _stop(proc)
            raise
        if code != 0:
            raise BuildError(progress.failure(f"repo2docker exited with code {code}"))

    async def check(self) -> None:
        await self._engine.check()

    async def aclose(self) -> None:
        await self._engine.aclose()


def _locate(command: list[str], environ: Mapping[str, str]) -> list[str]:
    """`repo2docker` from PATH, else the one installed beside this Python (same virtualenv)."""
    if not command or os.sep in command[0] or shutil.which(command[0], path=environ.get("PATH")):
        return command
    sibling = Path(sys.executable).parent / command[0]
    return [str(sibling), *command[1:]] if sibling.exists() else command


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the build's process group, then SIGKILL if it lingers. Safe to call on an exited process."""
    if proc.returncode is not None:
        return
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, KILL_GRACE)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            async with asyncio.timeout(wait):
                await proc.wait()
            return
        except TimeoutError:
            continue
