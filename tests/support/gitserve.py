"""Real git repositories and servers for tests: `git daemon`, smart HTTP through `git http-backend`.

Stdlib + subprocess only. Repositories are non-bare (both servers find `<name>/.git`) and commits use a
fixed author and date, so the same files always give the same commit id.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from tests.support.net import free_port

_GIT_ENV = {
    # Ignore the machine's and user's git config, so repositories look the same everywhere.
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Binder Test",
    "GIT_AUTHOR_EMAIL": "test@binder.invalid",
    "GIT_AUTHOR_DATE": "2020-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "Binder Test",
    "GIT_COMMITTER_EMAIL": "test@binder.invalid",
    "GIT_COMMITTER_DATE": "2020-01-01T00:00:00+0000",
}


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with the fixed test identity; its stdout, stripped."""
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **_GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}")
    return result.stdout.strip()


def _write(repo: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def make_repo(root: Path, name: str, files: dict[str, str], *, branch: str = "main") -> str:
    """A new non-bare repository at root/name with one commit of `files`; the commit id."""
    repo = root / name
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", branch)
    return commit(repo, files, "initial")


def commit(repo: Path, files: dict[str, str], message: str = "update") -> str:
    """Write `files` and commit them on the current branch; the commit id."""
    _write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return rev_parse(repo, "HEAD")


def tag(repo: Path, name: str, annotated: bool) -> str:
    """Tag HEAD; the commit id the tag points at (see rev_parse for an annotated tag's own id)."""
    if annotated:
        git(repo, "tag", "-a", "-m", f"tag {name}", name)
    else:
        git(repo, "tag", name)
    return rev_parse(repo, f"refs/tags/{name}^{{commit}}")


def branch(repo: Path, name: str) -> None:
    """Create branch `name` at HEAD without switching to it."""
    git(repo, "branch", name)


def rev_parse(repo: Path, rev: str) -> str:
    """The object id `rev` names in `repo`."""
    return git(repo, "rev-parse", "--verify", "--end-of-options", rev)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def serve_git_daemon(root: Path) -> Iterator[str]:
    """`git daemon` exporting every repository under `root`; yields "git://127.0.0.1:PORT/"."""
    root = root.resolve()
    for _attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    f"--base-path={root}",
                    "--listen=127.0.0.1",
                    f"--port={port}",
                    str(root),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 10
                while proc.poll() is None and time.monotonic() < deadline and not _accepts(port):
                    time.sleep(0.02)
                if proc.poll() is None and _accepts(port):
                    yield f"git://127.0.0.1:{port}/"
                    return
                log.seek(0)
                error = log.read().decode(errors="replace")
            finally:
                _stop(proc)
    raise RuntimeError(f"git daemon did not start: {error}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the daemon's whole process group: `git daemon` runs `git-daemon`, which forks per client."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    git_root: Path
    auth: str | None = None  # expected "Authorization" header; None: no authentication
    unauthorized: int = 0  # requests answered 401


class _GitHTTPHandler(BaseHTTPRequestHandler):
    """Runs `git http-backend` as a CGI for each request (smart HTTP: refs, fetch and clone)."""

    server: _GitHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections end, so their threads do too

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet test output

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _cgi(self) -> None:
        try:
            path, _, query = self.path.partition("?")
            body = self._body()
            if self.server.auth is not None and self.headers.get("Authorization") != self.server.auth:
                self.server.unauthorized += 1
                self.send_response(401)  # as a real git host: git then asks its credential helper
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            env = {
                **os.environ,
                "GIT_PROJECT_ROOT": str(self.server.git_root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": unquote(path),
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": self.client_address[0],
                "SERVER_PROTOCOL": self.request_version,
                "GATEWAY_INTERFACE": "CGI/1.1",
            }
            for key, value in self.headers.items():
                env["HTTP_" + key.upper().replace("-", "_")] = value
            if "Git-Protocol" in self.headers:  # lets clients negotiate protocol v2
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            result = subprocess.run(
                ["git", "http-backend"], input=body, capture_output=True, env=env, timeout=120, check=False
            )
            self._answer(result.stdout)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _answer(self, cgi_output: bytes) -> None:
        sep = b"\r\n\r\n" if b"\r\n\r\n" in cgi_output else b"\n\n"
        head, _, body = cgi_output.partition(sep)
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        if not head:
            status = 502
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@contextlib.contextmanager
def serve_git_http(root: Path, *, auth: tuple[str, str] | None = None) -> Iterator[str]:
    """Smart HTTP for every repository under `root`; yields "http://127.0.0.1:PORT/".

    With `auth` (user, password) every request needs that Basic authentication, else answers 401.
    """
    server = _GitHTTPServer(("127.0.0.1", 0), _GitHTTPHandler)
    server.git_root = root.resolve()
    if auth is not None:
        server.auth = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    with serve_threaded(server) as url:
        yield url


@contextlib.contextmanager
def serve_threaded(server: ThreadingHTTPServer) -> Iterator[str]:
    """Serve `server` from a thread until the block ends; yields "http://127.0.0.1:PORT/"."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
