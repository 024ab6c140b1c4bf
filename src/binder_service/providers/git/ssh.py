"""list_refs over ssh (and local paths, when allowed): `git ls-remote`, since authentication and host
keys belong to ssh. Its failures are classified by their (C locale) message."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
from collections.abc import Iterable, Mapping
from typing import Final

from ...errors import BinderError, RepoNotFound, RepoUnreachable, UpstreamTimeout
from ...security.child_env import child_environ
from ...security.egress import EgressPolicy
from ...security.redaction import redact_url, scrub
from .protocol import MAX_ADVERTISEMENT, RemoteRefs, parse_ls_remote
from .urls import url_host

__all__ = ["list_refs"]

_MAX_STDERR: Final = 64 << 10


async def list_refs(
    url: str,
    *,
    protocols: Iterable[str],
    environ: Mapping[str, str],
    connect_timeout: float,
    egress: EgressPolicy | None,
) -> RemoteRefs:
    """The refs `git ls-remote --symref` lists for `url`; git may use only `protocols` (GIT_ALLOW_PROTOCOL)
    and runs with `environ` (filtered by child_environ). The caller bounds the time;
    `connect_timeout` is ssh's ConnectTimeout."""
    shown = redact_url(url)
    host = url_host(url)
    if egress is not None and host is not None:
        # ssh resolves the name again itself: a DNS answer that changes in between is not caught.
        # A name we cannot resolve may be an alias in ssh's config: ssh decides about it.
        with contextlib.suppress(socket.gaierror):
            await egress.check_host(host)
    env = child_environ(
        environ,
        LC_ALL="C",  # stable messages to classify
        GIT_TERMINAL_PROMPT="0",
        GIT_ALLOW_PROTOCOL=":".join(sorted(protocols)),
        GIT_SSH_COMMAND=(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
            f" -o ConnectTimeout={max(1, math.ceil(connect_timeout))}"
        ),
    )
    proc = await asyncio.create_subprocess_exec(
        "git",
        "ls-remote",
        "--symref",
        "--",
        url,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,  # so a timeout can stop ssh along with git
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        out, err = await asyncio.gather(
            _read_capped(proc.stdout, MAX_ADVERTISEMENT, shown), _read_capped(proc.stderr, _MAX_STDERR)
        )
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if code != 0:
        raise _ls_remote_error(shown, err.decode("utf-8", "replace"))
    return parse_ls_remote(out, shown)


async def _read_capped(stream: asyncio.StreamReader, cap: int, where: str | None = None) -> bytes:
    """All of `stream`; past `cap` bytes raise RepoUnreachable (`where` given) or drop the rest."""
    buf = bytearray()
    while chunk := await stream.read(1 << 16):
        if len(buf) + len(chunk) > cap:
            if where is not None:
                raise RepoUnreachable(f"{where} sent more than {cap >> 20} MiB of refs")
            buf += chunk[: max(0, cap - len(buf))]
            continue
        buf += chunk
    return bytes(buf)


_UNREACHABLE = (
    "could not resolve hostname",
    "connection refused",
    "no route to host",
    "network is unreachable",
    "connection closed by",
    "connection reset",
)
_NOT_FOUND = (
    "does not appear to be a git repository",
    "repository not found",
    "not found",
    "permission denied",
    "access denied",
    "could not read from remote repository",
)


def _ls_remote_error(shown: str, stderr: str) -> BinderError:
    """Classifies a failed `git ls-remote` by its (C locale) message."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = scrub(lines[0]) if lines else "git ls-remote failed"
    low = stderr.lower()
    # Checked in this order because ssh appends "Could not read from remote repository" to every failure.
    if any(s in low for s in _UNREACHABLE):
        return RepoUnreachable(f"cannot reach {shown}: {detail}")
    if "timed out" in low:
        return UpstreamTimeout(f"{shown} did not answer: {detail}")
    if any(s in low for s in _NOT_FOUND):
        return RepoNotFound(f"repository not found or not public: {shown} ({detail})")
    return RepoUnreachable(f"cannot list refs of {shown}: {detail}")
