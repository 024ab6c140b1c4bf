"""Helper process: `git daemon` and smart HTTP (tests/support/gitserve.py) serving one directory.

Runs in its own process so neither the load client nor the service shares its CPU or GIL. Prints one
JSON line {"daemon": url, "http": url} once both answer, then serves until stdin closes (or SIGTERM).
GET <http>/_bench/counts answers {"requests", "info_refs", "clones", "connections"}: requests served,
ref advertisements produced (the service's lookups and clones alike), advertisements asked for by
anything but the service's resolver (clones/fetches, e.g. by repo2docker), and TCP connections accepted.

    python bench/_gitservers.py ROOT [--daemon-max-connections N] [--backlog N]

Both servers in tests/support/gitserve.py listen with a backlog of 5 (`git daemon` hardcodes
listen(fd, 5); socketserver's request_queue_size is 5). Twenty concurrent lookups overflow that, the
kernel drops the SYN and the client retries after its 1 s initial RTO: a p99 of ~1 s that is the test
server's, not the service's. `--backlog N` (N > 0) raises both: socketserver's class attribute, and
for git daemon a second listen(fd, N) on its listening socket, taken with pidfd_getfd (root only).
It also turns on TCP_NODELAY for the HTTP server (its header and body writes otherwise meet delayed
ACKs on a kept-alive connection).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from tests.support import gitserve  # noqa: E402

# info_refs: every ref advertisement; clones: those asked by anything but the service's own resolver
# (User-Agent "git/binder-service"), i.e. `git clone`/`fetch` runs, e.g. inside repo2docker.
_counts = {"requests": 0, "info_refs": 0, "clones": 0, "connections": 0}
_lock = threading.Lock()
_original_cgi = gitserve._GitHTTPHandler._cgi


def _counting_cgi(self: gitserve._GitHTTPHandler) -> None:
    if self.path.startswith("/_bench/counts"):
        with _lock:
            body = json.dumps(_counts).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return
    with _lock:
        _counts["requests"] += 1
        if "/info/refs" in self.path:
            _counts["info_refs"] += 1
            if self.headers.get("User-Agent", "") != "git/binder-service":
                _counts["clones"] += 1
    _original_cgi(self)


gitserve._GitHTTPHandler._cgi = _counting_cgi  # type: ignore[method-assign]
_original_setup = gitserve._GitHTTPHandler.setup


def _counting_setup(self: gitserve._GitHTTPHandler) -> None:
    with _lock:
        _counts["connections"] += 1
    _original_setup(self)


gitserve._GitHTTPHandler.setup = _counting_setup  # type: ignore[method-assign]


def _daemon_popen_with(max_connections: int) -> None:
    """`git daemon` defaults to --max-connections=32 and then sleeps 1 s in its accept loop and kills a
    connection from a duplicate address (every loopback client is one address). gitserve does not set
    it; for the benchmark's high-concurrency rows we add the flag to the argv gitserve builds."""
    real_popen = subprocess.Popen

    class Popen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, args, *a, **kw):  # type: ignore[no-untyped-def]
            if isinstance(args, list) and args[:2] == ["git", "daemon"]:
                args = [*args[:2], f"--max-connections={max_connections}", *args[2:]]
            super().__init__(args, *a, **kw)

    gitserve.subprocess.Popen = Popen  # type: ignore[misc]


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except OSError:
            continue
    return inodes


def _relisten(port: int, backlog: int) -> int:
    """listen(fd, backlog) again on every process's socket listening on `port`; how many were raised."""
    inodes = _listening_inodes(port)
    libc = ctypes.CDLL(None, use_errno=True)
    raised = 0
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if not (target.startswith("socket:[") and target[8:-1] in inodes):
                continue
            pidfd = os.pidfd_open(int(pid))
            try:
                local = libc.syscall(438, pidfd, int(fd), 0)  # pidfd_getfd
                if local < 0:
                    raise OSError(ctypes.get_errno(), "pidfd_getfd failed")
                sock = socket.socket(fileno=local)
                sock.listen(backlog)
                sock.detach()
                os.close(local)
                raised += 1
            finally:
                os.close(pidfd)
    return raised


def main() -> int:
    root = Path(sys.argv[1])
    if "--daemon-max-connections" in sys.argv:
        _daemon_popen_with(int(sys.argv[sys.argv.index("--daemon-max-connections") + 1]))
    backlog = int(sys.argv[sys.argv.index("--backlog") + 1]) if "--backlog" in sys.argv else 0
    if backlog > 0:
        gitserve._GitHTTPServer.request_queue_size = backlog
        # http.server writes headers and body separately; with Nagle on, a kept-alive connection
        # waits for the client's delayed ACK (~40 ms) before the body goes out.
        gitserve._GitHTTPHandler.disable_nagle_algorithm = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with gitserve.serve_git_daemon(root) as daemon, gitserve.serve_git_http(root) as http:
        raised = 0
        if backlog > 0:
            raised = _relisten(int(daemon.rstrip("/").rsplit(":", 1)[1]), backlog)
        print(json.dumps({"daemon": daemon, "http": http, "daemon_relistened": raised}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
