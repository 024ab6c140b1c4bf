"""Resolve a git URL + ref to a commit id, in-process for http(s) and git://, through `git` for ssh.

Spawning `git ls-remote` costs ~50 ms; reading the ref advertisement ourselves costs one round trip.
So http(s) speaks git's smart HTTP protocol (v0/v1) through the shared httpx client and git:// speaks
the daemon protocol over a raw socket. ssh (and local paths, when allowed) still runs `git ls-remote`
because authentication and host keys belong to ssh. Every failure becomes one of the `errors` classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from ..child_env import child_environ
from ..credentials import GitCredentials
from ..egress import EgressPolicy
from ..errors import (
    BinderError,
    InputTooLarge,
    InvalidSpec,
    RefNotFound,
    RepoNotAllowed,
    RepoNotFound,
    RepoUnreachable,
    UpstreamTimeout,
)

__all__ = [
    "GitRemote",
    "RemoteRefs",
    "check_git_url",
    "is_commit_id",
    "pick_ref",
    "redact_url",
    "url_host",
]

DEFAULT_PROTOCOLS: Final = frozenset({"http", "https", "git", "ssh"})
GIT_DAEMON_PORT: Final = 9418
# A hostile server must not exhaust memory: real advertisements, even GitHub's biggest, are far smaller.
MAX_ADVERTISEMENT: Final = 32 << 20
_MAX_STDERR: Final = 64 << 10
_USER_AGENT: Final = "git/binder-service"  # some hosts only speak the smart protocol to "git/*" agents

_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_SHA = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# git's "<transport>::<address>" remote-helper syntax (ext::, fd::, ...) runs arbitrary helpers.
_HELPER = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
_SCHEME_ALIASES: Final = {"git+ssh": "ssh", "ssh+git": "ssh"}
_NETWORK_PROTOCOLS: Final = frozenset({"http", "https", "git", "ssh"})
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")
_BRACKETED = re.compile(r"\[[0-9A-Fa-f:.]+(%[^\]]+)?\](:[0-9]*)?")  # [IPv6 literal][:port]


@dataclass(frozen=True)
class RemoteRefs:
    """A repository's ref advertisement; annotated tags are peeled to the commit they tag."""

    refs: dict[str, str]  # full ref name -> commit id
    head: str | None  # commit HEAD points at, if advertised
    head_target: str | None  # e.g. "refs/heads/main", if the server advertised HEAD's symref


# --- URLs -----------------------------------------------------------------------------------------


def is_commit_id(ref: str) -> bool:
    """True for a full commit id (SHA-1 or SHA-256), which needs no lookup: it cannot move."""
    return _FULL_SHA.fullmatch(ref) is not None


def redact_url(url: str) -> str:
    """`url` without `user:password@`, safe for messages and logs."""
    m = _SCHEME.match(url)
    if not m:
        return url  # scp-like "user@host:path": the ssh user name is not a secret
    rest = url[m.end() :]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    return url if at < 0 else m.group(0) + rest[at + 1 :]


def _scrub(text: str, limit: int = 300) -> str:
    """Text from a server or a subprocess made safe for a message: no credentials or control chars."""
    text = _USERINFO_IN_TEXT.sub(r"\1", text)
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def _is_local(url: str) -> bool:
    # git's own rule (url_is_local_not_ssh): no colon, or a slash before the first colon.
    if url[:1] in ("/", ".", "~") or url.lower().startswith("file:"):
        return True
    colon, slash = url.find(":"), url.find("/")
    return colon < 0 or 0 <= slash < colon


def _protocol(url: str) -> str:
    """The transport git would use for an already checked URL: http, https, git, ssh or file."""
    m = _SCHEME.match(url)
    if m:
        scheme = m.group(1).lower()
        return _SCHEME_ALIASES.get(scheme, scheme)
    return "file" if _is_local(url) else "ssh"


def check_git_url(url: str, *, allowed_protocols: frozenset[str], allow_local: bool, max_length: int) -> str:
    """`url` unchanged if it is a repository URL we may contact; RepoNotAllowed/InvalidSpec otherwise."""
    if len(url) > max_length:
        raise InputTooLarge(f"repository URL is longer than {max_length} characters")
    if not url:
        raise InvalidSpec("repository URL is empty")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise RepoNotAllowed("repository URL must not contain whitespace or control characters")
    if url.startswith("-"):
        raise RepoNotAllowed("repository URL must not start with '-' (it would read as a git option)")
    if _HELPER.match(url):
        raise RepoNotAllowed("git remote-helper URLs ('<transport>::<address>') are not allowed")
    m = _SCHEME.match(url)
    proto = _protocol(url)
    if proto == "file":
        if not allow_local:
            raise RepoNotAllowed(f"local repositories are not allowed: {redact_url(url)!r}")
        return url
    if proto not in _NETWORK_PROTOCOLS or proto not in allowed_protocols:
        scheme = m.group(1) if m else "ssh"
        raise RepoNotAllowed(f"protocol {scheme!r} is not allowed for repositories")
    if m is None:
        _check_scp_like(url)
    else:
        _check_netloc(url, proto)
    return url


def _check_netloc(url: str, proto: str) -> None:
    try:  # urlsplit refuses unbalanced brackets and hosts NFKC turns into delimiters; .port a bad number
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as e:
        raise InvalidSpec(f"repository URL has an invalid host or port: {redact_url(url)!r}") from e
    if "[" in parts.netloc and not _BRACKETED.fullmatch(parts.netloc.rpartition("@")[2]):
        # "[::1]x" parses, but git and urlsplit would not agree on its host
        raise InvalidSpec(f"repository URL has an invalid host: {redact_url(url)!r}")
    if not host:
        raise InvalidSpec(f"repository URL has no host: {redact_url(url)!r}")
    # ssh would read a host or user starting with "-" as an option (CVE-2017-1000117).
    if host.startswith("-") or (parts.username or "").startswith("-"):
        raise RepoNotAllowed("repository host or user must not start with '-'")
    # A secret in a URL ends up in repo2docker's argv, logs and image labels. ssh's user name is not one.
    if parts.password is not None or (proto != "ssh" and parts.username is not None):
        raise RepoNotAllowed(
            f"repository URLs must not contain credentials ({redact_url(url)!r}); "
            "private repositories use the credentials the operator configured (git_credentials)"
        )
    if proto in ("git", "ssh") and parts.path.strip("/") == "":
        raise InvalidSpec(f"repository URL has no path: {redact_url(url)!r}")


def _check_scp_like(url: str) -> None:
    """`[user@]host:path`, which git treats as ssh."""
    if "[" in url.partition(":")[0]:  # [host:port]:path or user@[host]:path
        close = url.find("]")
        if close < 0 or url[close + 1 : close + 2] != ":":
            raise InvalidSpec(f"repository URL does not parse: {url!r}")
        userhost, path = url[: close + 1], url[close + 2 :]
    else:
        userhost, _, path = url.partition(":")
    user, _, host = userhost.rpartition("@")
    if not host.strip("[]") or not path:
        raise InvalidSpec(f"repository URL has no host or no path: {url!r}")
    if host.lstrip("[").startswith("-") or user.startswith("-"):
        raise RepoNotAllowed("repository host or user must not start with '-'")


# --- refs -----------------------------------------------------------------------------------------


def pick_ref(refs: RemoteRefs, ref: str) -> str | None:
    """The commit `ref` names: HEAD, a full ref, a tag, a branch, else `refs/<ref>` (e.g. pull/1/head)."""
    if ref == "HEAD":
        return refs.head
    if ref.startswith("refs/"):
        return refs.refs.get(ref)
    for candidate in (f"refs/tags/{ref}", f"refs/heads/{ref}", f"refs/{ref}"):
        if candidate in refs.refs:
            return refs.refs[candidate]
    return None


class _Advertisement:
    """Collects `<sha> <name>` lines (pkt-line payloads or ls-remote output) into RemoteRefs."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._refs: dict[str, str] = {}
        self._peeled: dict[str, str] = {}
        self._head: str | None = None
        self._head_target: str | None = None
        self._first = True

    def _bad(self) -> RepoUnreachable:
        return RepoUnreachable(f"{self._where} sent a malformed ref advertisement")

    def add_pkt(self, line: bytes) -> None:
        """One v0/v1 advertisement line; the first carries capabilities after a NUL."""
        if self._first:
            self._first = False
            line, _, caps = line.partition(b"\0")
            for cap in caps.split():
                if cap.startswith(b"symref=HEAD:"):
                    self._head_target = cap[len(b"symref=HEAD:") :].decode("utf-8", "replace")
        sha, sep, name = line.partition(b" ")
        if not sep:
            raise self._bad()
        if name == b"capabilities^{}":  # an empty repository advertises only its capabilities
            return
        self._add(sha, name)

    def add_ls_remote(self, line: bytes) -> None:
        """One line of `git ls-remote --symref`: `<sha>\\t<name>` or `ref: <target>\\t<name>`."""
        left, sep, name = line.partition(b"\t")
        if not sep:
            raise self._bad()
        if left.startswith(b"ref: "):
            if name == b"HEAD":
                self._head_target = left[5:].decode("utf-8", "replace")
            return
        self._add(left, name)

    def _add(self, sha: bytes, name: bytes) -> None:
        if not _SHA.fullmatch(sha) or not name:
            raise self._bad()
        commit, ref = sha.decode("ascii"), name.decode("utf-8", "replace")
        if ref.endswith("^{}"):
            self._peeled[ref[:-3]] = commit
        elif ref == "HEAD":
            self._head = commit
        else:
            self._refs[ref] = commit

    def result(self) -> RemoteRefs:
        refs = self._refs | {name: sha for name, sha in self._peeled.items() if name in self._refs}
        return RemoteRefs(refs=refs, head=self._head, head_target=self._head_target)


class _PktReader:
    """Splits a byte stream into pkt-line payloads (trailing LF removed), with an overall size cap."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._buf = bytearray()
        self._seen = 0

    def feed(self, data: bytes) -> Iterator[bytes | None]:
        """Complete pkt-lines seen so far: payloads, None for a flush (0000)."""
        self._seen += len(data)
        if self._seen > MAX_ADVERTISEMENT:
            raise RepoUnreachable(f"{self._where} sent more than {MAX_ADVERTISEMENT >> 20} MiB of refs")
        self._buf += data
        pos = 0
        while len(self._buf) - pos >= 4:
            head = bytes(self._buf[pos : pos + 4])
            try:
                size = int(head, 16)
            except ValueError:
                raise RepoUnreachable(f"{self._where} did not answer with git's protocol") from None
            if size == 0:
                pos += 4
                yield None
                continue
            if size < 4:  # 0001/0002 are protocol v2 delimiters, which we never ask for
                raise RepoUnreachable(f"{self._where} answered with an unexpected git protocol version")
            if len(self._buf) - pos < size:
                break
            payload = bytes(self._buf[pos + 4 : pos + size])
            pos += size
            yield payload[:-1] if payload.endswith(b"\n") else payload
        del self._buf[:pos]


class _RefsParser:
    """Turns pkt-line payloads into RemoteRefs; `done` once the advertisement's closing flush arrives."""

    def __init__(self, where: str, *, smart_http: bool) -> None:
        self._where = where
        self._state: Literal["service", "service-flush", "refs", "done"] = "service" if smart_http else "refs"
        self._advert = _Advertisement(where)
        self._any = False

    @property
    def done(self) -> bool:
        return self._state == "done"

    def add(self, pkt: bytes | None) -> None:
        if pkt is not None and pkt.startswith(b"ERR "):
            message = _scrub(pkt[4:].decode("utf-8", "replace"))
            raise RepoNotFound(f"{self._where}: {message}")
        if self._state == "service":
            if pkt != b"# service=git-upload-pack":
                raise RepoUnreachable(f"{self._where} does not speak git's smart HTTP protocol")
            self._state = "service-flush"
        elif self._state == "service-flush":
            self._state = "refs"
            if pkt is not None:  # some old servers omit this flush
                self.add(pkt)
        elif pkt is None:
            self._state = "done"
        elif not self._any and pkt == b"version 1":
            pass
        else:
            self._any = True
            self._advert.add_pkt(pkt)

    def result(self) -> RemoteRefs:
        if not self.done:
            raise RepoUnreachable(f"{self._where} closed the connection before the end of its refs")
        return self._advert.result()


# --- transports -----------------------------------------------------------------------------------


class GitRemote:
    """Lists a remote repository's refs and resolves a ref to a commit id."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        allowed_protocols: frozenset[str] = DEFAULT_PROTOCOLS,
        allow_local: bool = False,
        max_url_length: int = 2048,
        egress: EgressPolicy | None = None,
        credentials: GitCredentials | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """`environ` is what `git ls-remote` (ssh) runs with, filtered (default: empty).
        `egress` checks git:// and ssh destinations (HTTP is checked by `http`'s transport: pass
        `egress.http_client()`); None checks nothing. `credentials` are sent over HTTP(S) to their origin."""
        self._http = http
        self._egress = egress
        self._credentials = credentials or GitCredentials()
        self._timeout = timeout
        self._allowed = allowed_protocols
        self._allow_local = allow_local
        self._max_url_length = max_url_length
        self._environ: Mapping[str, str] = environ if environ is not None else {}

    async def resolve(self, url: str, ref: str) -> str:
        """The commit `ref` names in the repository at `url`; RefNotFound if none."""
        self._check(url)
        if is_commit_id(ref):
            return ref.lower()  # a commit id is already immutable: no round trip
        if not ref or any(c.isspace() or not c.isprintable() for c in ref):
            raise InvalidSpec(f"{ref[:100]!r} is not a valid git ref")
        commit = pick_ref(await self.list_refs(url), ref)
        if commit is None:
            raise RefNotFound(f"ref {ref[:200]!r} not found in {redact_url(url)}")
        return commit

    async def list_refs(self, url: str) -> RemoteRefs:
        """Every ref the repository at `url` advertises."""
        self._check(url)
        proto = _protocol(url)
        async with self._translate_errors(url):
            async with asyncio.timeout(self._timeout):
                if proto in ("http", "https"):
                    return await self._http_refs(url)
                if proto == "git":
                    return await self._daemon_refs(url)
                return await self._ls_remote(url)

    def _check(self, url: str) -> None:
        check_git_url(
            url,
            allowed_protocols=self._allowed,
            allow_local=self._allow_local,
            max_length=self._max_url_length,
        )

    @contextlib.asynccontextmanager
    async def _translate_errors(self, url: str) -> AsyncIterator[None]:
        """The one place transport errors become the error tree; messages carry no credentials."""
        shown = redact_url(url)
        try:
            yield
        except BinderError:
            raise
        except (TimeoutError, httpx.TimeoutException) as e:
            raise UpstreamTimeout(f"{shown} did not answer within {self._timeout:g}s") from e
        except httpx.InvalidURL as e:
            raise InvalidSpec(f"repository URL does not parse: {shown!r}") from e
        except UnicodeError as e:  # IDNA encoding of a malformed host name
            raise InvalidSpec(f"repository URL has an invalid host: {shown!r}") from e
        except asyncio.IncompleteReadError as e:
            raise RepoUnreachable(f"{shown} closed the connection before the end of its refs") from e
        except (OSError, httpx.HTTPError) as e:
            raise RepoUnreachable(f"cannot reach {shown}: {_describe(e)}") from e

    async def _http_refs(self, url: str) -> RemoteRefs:
        shown = redact_url(url)
        parts = urlsplit(url)
        # The operator's credential for this exact origin. httpx drops it on a redirect to another origin
        # (except http -> https on the same host), so it never reaches a host it was not meant for.
        auth = self._credentials.basic_auth(url)
        info_refs = _info_refs_url(parts)
        headers = {"User-Agent": _USER_AGENT, "Pragma": "no-cache", "Cache-Control": "no-cache"}
        async with self._http.stream(
            "GET", info_refs, headers=headers, auth=auth, timeout=self._timeout, follow_redirects=True
        ) as resp:
            if resp.status_code in (401, 403, 404, 410):
                raise RepoNotFound(f"repository not found or not public: {shown}")
            if resp.status_code != 200:
                raise RepoUnreachable(f"{shown} answered HTTP {resp.status_code}")
            ctype = resp.headers.get("content-type", "").partition(";")[0].strip().lower()
            if ctype != "application/x-git-upload-pack-advertisement":
                raise RepoUnreachable(
                    f"{shown} does not speak git's smart HTTP protocol (dumb HTTP servers are not supported)"
                )
            reader, parser = _PktReader(shown), _RefsParser(shown, smart_http=True)
            async for chunk in resp.aiter_bytes():
                for pkt in reader.feed(chunk):
                    parser.add(pkt)
                    if parser.done:
                        return parser.result()
            return parser.result()

    async def _daemon_refs(self, url: str) -> RemoteRefs:
        shown = redact_url(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or GIT_DAEMON_PORT
        # As git sends it: host as written (IPv6 keeps its brackets), port only when given.
        host_header = parts.netloc.rpartition("@")[2]
        request = f"git-upload-pack {parts.path}\0host={host_header}\0".encode()
        if self._egress is not None:  # resolve, check, connect to the checked address
            reader, writer = await self._egress.open_connection(host, port)
        else:
            reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(_pkt(request))
            await writer.drain()
            pkts, parser = _PktReader(shown), _RefsParser(shown, smart_http=False)
            while not parser.done:
                data = await reader.read(1 << 16)
                if not data:
                    break
                for pkt in pkts.feed(data):
                    parser.add(pkt)
                    if parser.done:
                        break
            refs = parser.result()
            # A flush instead of "want" lines tells upload-pack we are done, so it exits cleanly.
            writer.write(b"0000")
            await writer.drain()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return refs
        finally:
            if not writer.is_closing():
                writer.transport.abort()

    async def _ls_remote(self, url: str) -> RemoteRefs:
        shown = redact_url(url)
        host = _ssh_host(url)
        if self._egress is not None and host is not None:
            # ssh resolves the name again itself: a DNS answer that changes in between is not caught.
            # A name we cannot resolve may be an alias in ssh's config: ssh decides about it.
            with contextlib.suppress(socket.gaierror):
                await self._egress.check_host(host)
        protocols = set(self._allowed) | ({"file"} if self._allow_local else set())
        env = child_environ(
            self._environ,
            LC_ALL="C",  # stable messages to classify
            GIT_TERMINAL_PROMPT="0",
            GIT_ALLOW_PROTOCOL=":".join(sorted(protocols)),
            GIT_SSH_COMMAND=(
                "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
                f" -o ConnectTimeout={max(1, math.ceil(self._timeout))}"
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
        advert = _Advertisement(shown)
        for line in out.splitlines():
            if line:
                advert.add_ls_remote(line)
        return advert.result()


def url_host(url: str) -> str | None:
    """The host a repository URL names (any scheme, or scp-like `[user@]host:path`); None for a local path.

    ValueError for a URL whose host part does not parse."""
    return _ssh_host(url)


def _ssh_host(url: str) -> str | None:
    """The host an ssh URL (`ssh://[user@]host[:port]/path` or `[user@]host:path`) names; None for local."""
    proto = _protocol(url)
    if proto == "file":
        return None
    if _SCHEME.match(url):
        return urlsplit(url).hostname
    userhost = url[: url.find("]") + 1] if "[" in url.partition(":")[0] else url.partition(":")[0]
    host = userhost.rpartition("@")[2].strip("[]").partition("%")[0]
    if host.count(":") == 1:  # "[host:port]:path"
        host = host.partition(":")[0]
    return host or None


def _info_refs_url(parts: SplitResult) -> str:
    hostport = parts.netloc.rpartition("@")[2]
    path = parts.path.rstrip("/") + "/info/refs"
    return urlunsplit((parts.scheme, hostport, path, "service=git-upload-pack", ""))


def _describe(error: BaseException) -> str:
    """A short, credential-free reason for a transport error (httpx hides the OSError in its chain)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror):
            return "host not found"
        if isinstance(e, OSError) and e.strerror:
            return _scrub(e.strerror)
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo += [e.__cause__, e.__context__]
    return _scrub(str(error) or type(error).__name__)


def _pkt(payload: bytes) -> bytes:
    return f"{len(payload) + 4:04x}".encode() + payload


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
    detail = _scrub(lines[0]) if lines else "git ls-remote failed"
    low = stderr.lower()
    # Checked in this order because ssh appends "Could not read from remote repository" to every failure.
    if any(s in low for s in _UNREACHABLE):
        return RepoUnreachable(f"cannot reach {shown}: {detail}")
    if "timed out" in low:
        return UpstreamTimeout(f"{shown} did not answer: {detail}")
    if any(s in low for s in _NOT_FOUND):
        return RepoNotFound(f"repository not found or not public: {shown} ({detail})")
    return RepoUnreachable(f"cannot list refs of {shown}: {detail}")
