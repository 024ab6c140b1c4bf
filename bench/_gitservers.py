"""Helper process: `git daemon` and smart HTTP (tests/support/gitserve.py) serving one directory.

Runs in its own process so neither the load client nor the service shares its CPU or GIL. Prints one
JSON line {"daemon": url, "http": url} once both answer, then serves until stdin closes (or SIGTERM).
GET <http>/_bench/counts answers {"requests": n, "info_refs": n}: how many ref advertisements the
smart HTTP server actually produced (i.e. upstream lookups the service made).

    python bench/_gitservers.py ROOT [--daemon-max-connections N]
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from tests.support import gitserve  # noqa: E402

_counts = {"requests": 0, "info_refs": 0}
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
    _original_cgi(self)


gitserve._GitHTTPHandler._cgi = _counting_cgi  # type: ignore[method-assign]


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


def main() -> int:
    root = Path(sys.argv[1])
    if "--daemon-max-connections" in sys.argv:
        _daemon_popen_with(int(sys.argv[sys.argv.index("--daemon-max-connections") + 1]))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with gitserve.serve_git_daemon(root) as daemon, gitserve.serve_git_http(root) as http:
        print(json.dumps({"daemon": daemon, "http": http}), flush=True)
        try:
            sys.stdin.read()  # until the benchmark closes our stdin (or exits)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
