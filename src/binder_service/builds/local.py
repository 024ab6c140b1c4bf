"""The embedded default executor: repo2docker as a local process against the engine at DOCKER_HOST."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from ..errors import BuildError
from ..events import Phase
from ..registry import EngineImageStore
from .executor import BuildJob, Emit
from .r2d_logs import parse_line

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024  # longer output lines are cut: one huge line must not hold the build's memory
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when a build is stopped
# Our own configuration never reaches repo2docker (it may hold tokens).
_PRIVATE_ENV_PREFIXES = ("BINDER_SERVICE_", "JUPYTERHUB_")

# Only the content provider the request needs: faster, and repo2docker's Dataverse/Mercurial detection
# would otherwise reach out to the internet (or run `hg`) for every URL.
_R2D_CONFIG = """\
from repo2docker.contentproviders import {provider}
c.Repo2Docker.content_providers = [{provider}]
"""


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
    ) -> None:
        self._docker_host = docker_host
        self._command = _locate(command, environ)
        self._extra_args = extra_args
        self._workdir = Path(tempfile.mkdtemp(prefix="binder-service-"))
        self._env = self._build_env(environ, docker_config, allowed_git_protocols, allow_local)
        self._engine = EngineImageStore(docker_host, timeout=docker_timeout)

    def _build_env(
        self, environ: Mapping[str, str], docker_config: Path | None, protocols: list[str], allow_local: bool
    ) -> dict[str, str]:
        env = {k: v for k, v in environ.items() if not k.startswith(_PRIVATE_ENV_PREFIXES)}
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

    def _config_file(self, content_provider: str) -> Path:
        if not content_provider.isidentifier():
            raise BuildError(f"unknown repo2docker content provider {content_provider!r}")
        path = self._workdir / f"r2d-{content_provider}.py"
        if not path.exists():
            path.write_text(_R2D_CONFIG.format(provider=content_provider))
        return path

    def argv(self, job: BuildJob) -> list[str]:
        """The repo2docker command line. The repository URL comes after `--`: never an option."""
        return [
            *self._command,
            "--config", str(self._config_file(job.repo.content_provider)),
            "--json-logs",
            "--no-run",
            "--user-id", "1000",
            "--user-name", "jovyan",
            "--image-name", job.image_name,
            "--ref", job.repo.commit,
            *(["--push"] if job.push else []),
            *self._extra_args,
            "--",
            job.repo.repo_url,
        ]  # fmt: skip

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
        phase = Phase.FETCHING
        errors: list[str] = []
        try:
            assert proc.stdout is not None
            async for raw in _lines(proc.stdout):
                line = parse_line(raw)
                if line.error:
                    errors.append(line.message.strip())
                    continue
                # buildx prints its push inside the build's output: once pushing, stay there.
                if line.phase is not None and not (phase is Phase.PUSHING and line.phase is Phase.BUILDING):
                    phase = line.phase
                emit(phase, line.message)
            code = await proc.wait()
        except BaseException:
            await _stop(proc)
            raise
        if code != 0:
            reason = errors[-1] if errors else f"repo2docker exited with code {code}"
            raise BuildError(reason)

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


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Decoded lines of at most MAX_LINE characters, without holding more than one chunk of a long line."""
    pending = b""
    while chunk := await stream.read(65536):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line[:MAX_LINE].decode("utf-8", "replace")
        if len(pending) > MAX_LINE:
            yield pending[:MAX_LINE].decode("utf-8", "replace")
            pending = b""
    if pending:
        yield pending[:MAX_LINE].decode("utf-8", "replace")


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
