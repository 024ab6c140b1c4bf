"""A unix-socket proxy in front of the world's Docker engine, which a test can cut: "the engine died".

Killing the world's own dockerd would take every other test with it; from a build's side, an engine
whose socket stops answering mid-build looks the same.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path


class EngineProxy:
    """Forwards every connection on `path` to the socket `target`; `cut()` drops all and stops listening."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self._target = target
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    return
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()
        self._listener.close()
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def engine_proxy(path: Path, target_host: str) -> Iterator[EngineProxy]:
    """A proxy at `path` for the engine at `target_host` (unix://...); cut on exit."""
    proxy = EngineProxy(path, target_host.removeprefix("unix://"))
    try:
        yield proxy
    finally:
        if not proxy._cut:
            proxy.cut()
