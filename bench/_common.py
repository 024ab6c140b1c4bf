"""Shared parts of the benchmarks: the world, git servers and the service as separate processes, a raw
asyncio HTTP/1.1 client, an httpx client with the same interface, and /proc accounting (CPU, RSS).

Nothing here asserts on timings: the scripts print figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT / "scripts"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from tests.support.net import free_port  # noqa: E402

import world  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
REGISTRY = world.REGISTRY_ADDR
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def describe_src() -> str:
    """Which service code is measured: the commit, and whether src/ has uncommitted changes."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src")
    return f"src at {commit}" + (" + uncommitted changes in src/" if dirty else "")


def run_id() -> str:
    return secrets.token_hex(3)


# --- /proc accounting ------------------------------------------------------------------------------


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def rss_mib(pid: int) -> float:
    """VmRSS of `pid` in MiB."""
    return int(_status(pid)["VmRSS"].split()[0]) / 1024


def hwm_mib(pid: int) -> float:
    """VmHWM (peak RSS since the process started) in MiB."""
    return int(_status(pid)["VmHWM"].split()[0]) / 1024


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    return kids


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # after the comm: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def own_cpu(pid: int) -> float:
    """CPU seconds of `pid` itself (utime + stime), without its children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and every descendant, live or already reaped (reaped ones are in cutime)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            total += _proc_cpu(p)
            todo += _children(p)
    return total


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def tcp_ext(*names: str) -> dict[str, int]:
    """Machine-wide TcpExt counters from /proc/net/netstat (e.g. ListenOverflows, TCPSynRetrans)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    values = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))
    return {n: values.get(n, 0) for n in names}


def tcp_passive_opens() -> int:
    """Machine-wide count of accepted TCP connections (loopback included)."""
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Tcp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("PassiveOpens")])


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread; `.peak` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                value = rss_mib(self.pid)
                self.samples.append(value)
                self.peak = max(self.peak, value)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the world's processes -------------------------------------------------------------------------


def world_up() -> dict[str, str]:
    log("world: dockerd + registry + busybox base image (scripts/world.py up)")
    return world.up()


class GitServers:
    """bench/_gitservers.py in its own process: git daemon + smart HTTP over `root`."""

    def __init__(self, root: Path, *, daemon_max_connections: int | None = None, backlog: int = 0) -> None:
        self.root = root
        argv = [sys.executable, str(ROOT / "bench" / "_gitservers.py"), str(root), "--backlog", str(backlog)]
        if daemon_max_connections is not None:
            argv += ["--daemon-max-connections", str(daemon_max_connections)]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        assert self.proc.stdout is not None
        urls = json.loads(self.proc.stdout.readline() or "{}")
        if not urls:
            raise RuntimeError("git servers did not start")
        self.daemon_url: str = urls["daemon"]
        self.http_url: str = urls["http"]
        if backlog > 0 and urls.get("daemon_relistened", 0) < 1:
            log("warning: could not raise git daemon's listen backlog (needs root and pidfd_getfd)")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def http_counts(self) -> dict[str, int]:
        with urllib.request.urlopen(self.http_url + "_bench/counts", timeout=5) as r:
            return dict(json.loads(r.read()))

    def url(self, proto: str, name: str) -> str:
        return (self.daemon_url if proto == "git" else self.http_url) + name

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(10)


@dataclass
class Service:
    """`binder-service serve` as a separate process against the world's engine and registry."""

    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    # A command the service runs under (e.g. valgrind), and a state directory to reuse (default: a new one).
    wrapper: list[str] = field(default_factory=list)
    state_dir: str | None = None
    _own_log: bool = False
    _own_state: str | None = None

    def _state(self) -> str:
        """The state directory to use: the one given, else a build store of its own (removed at stop)."""
        if self.state_dir is not None:
            return self.state_dir
        self._own_state = tempfile.mkdtemp(prefix="bench-state-")
        return self._own_state

    def start(self, timeout: float = 60.0) -> Service:
        self.port = free_port()
        env = {
            **os.environ,
            "BINDER_SERVICE_REGISTRY_URL": f"http://{REGISTRY}",
            "BINDER_SERVICE_IMAGE_PREFIX": self.prefix,
            "BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS": "true",  # the benchmarks' git servers are on loopback
            "BINDER_SERVICE_STATE_DIR": self._state(),
            "DOCKER_HOST": world.DOCKER_HOST,
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            **self.env,
        }
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="bench-service-", suffix=".log")[1])
            self._own_log = True
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.wrapper, str(VENV_BIN / "binder-service"), "serve", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"service exited; log {self.log_path}:\n{self.log_path.read_text()[-3000:]}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "health", timeout=5) as r:
                if r.status == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"service did not become healthy; log {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(self.url + "metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(name)

    def stop(self) -> None:
        """Stop the service; the log it wrote to a temp file goes too, unless BENCH_KEEP_LOGS=1."""
        if self.proc is None or self.proc.poll() is not None:
            self._drop_log()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._drop_log()

    def _drop_log(self) -> None:
        if self._own_state is not None:
            shutil.rmtree(self._own_state, ignore_errors=True)
            self._own_state = None
        if self._own_log and self.log_path is not None and not os.environ.get("BENCH_KEEP_LOGS"):
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def git_world(
    daemon_max_connections: int | None = None, backlog: int = 0
) -> Iterator[tuple[Path, GitServers]]:
    """A temporary repository root served by a git daemon and smart HTTP in a helper process."""
    with tempfile.TemporaryDirectory(prefix="bench-git-") as tmp:
        root = Path(tmp)
        servers = GitServers(root, daemon_max_connections=daemon_max_connections, backlog=backlog)
        try:
            yield root, servers
        finally:
            servers.close()


def binderhub_path(repo_url: str, ref: str) -> str:
    return f"/build/git/{quote(repo_url, safe='')}/{quote(ref, safe='')}?build_only=true"


# --- a raw asyncio HTTP/1.1 client (keep-alive, chunked) -------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    ready_at: float | None = None  # perf_counter when a `"phase": "ready"` chunk arrived (SSE)


class RawConn:
    """One keep-alive HTTP/1.1 connection speaking just what the service answers (chunked or sized)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        self.connects += 1

    async def request(
        self, method: str, target: str, body: bytes | None = None, *, sse: bool = False
    ) -> Reply:
        if self.writer is None or self.writer.is_closing():
            await self._connect()
        assert self.reader is not None
        assert self.writer is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if sse:
            head += "Accept: text/event-stream\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head + "\r\n").encode() + (body or b""))
        r = self.reader
        status_line = await r.readline()
        if not status_line:
            self.close()
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        chunked, length, close = False, 0, False
        while True:
            line = await r.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            key, value = key.strip().lower(), value.strip().lower()
            if key == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif key == "content-length":
                length = int(value)
            elif key == "connection" and value == "close":
                close = True
        ready_at = None
        if chunked:
            parts = []
            while True:
                size = int((await r.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await r.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunk = (await r.readexactly(size + 2))[:-2]
                if ready_at is None and b'"phase": "ready"' in chunk:
                    ready_at = time.perf_counter()
                parts.append(chunk)
            data = b"".join(parts)
        else:
            data = await r.readexactly(length) if length else b""
        if close:
            self.close()
        return Reply(status, data, ready_at)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class HttpxConn:
    """The same interface on a shared httpx.AsyncClient (for comparing client overhead)."""

    def __init__(self, client: Any, base: str) -> None:
        self.client, self.base = client, base.rstrip("/")
        self.connects = 0

    async def request(
        self, method: str, target: str, body: bytes | None = None, *, sse: bool = False
    ) -> Reply:
        headers = {"Accept": "text/event-stream"} if sse else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        async with self.client.stream(method, self.base + target, content=body, headers=headers) as resp:
            parts, ready_at = [], None
            async for chunk in resp.aiter_raw():
                if ready_at is None and b'"phase": "ready"' in chunk:
                    ready_at = time.perf_counter()
                parts.append(chunk)
            return Reply(resp.status_code, b"".join(parts), ready_at)

    def close(self) -> None:
        pass


def last_sse(body: bytes) -> dict[str, Any]:
    """The last `data:` message of an event stream body."""
    for line in reversed(body.split(b"\n")):
        if line.startswith(b"data:"):
            return dict(json.loads(line[5:]))
    return {}


# --- load running ------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    n: int
    concurrency: int
    seconds: float
    latencies: list[float]
    errors: int
    first_error: str | None
    connects: int

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


Check = Callable[[Reply], str | None]  # None when the reply is what we wanted, else why not


async def run_load(
    conns: list[Any],
    n: int,
    make: Callable[[int, int], tuple[str, str, bytes | None, bool]],
    check: Check,
    *,
    until: float | None = None,
) -> LoadResult:
    """`n` requests over len(conns) workers, each reusing its own connection. `make(i, worker)` gives
    (method, target, body, sse) for request i; latency is request start -> reply complete. With
    `until` (a perf_counter deadline) workers also stop at that moment."""
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    counter = iter(range(n))
    before = sum(c.connects for c in conns)

    async def worker(w: int, conn: Any) -> None:
        nonlocal errors, first_error
        for i in counter:
            if until is not None and time.perf_counter() > until:
                return
            method, target, body, sse = make(i, w)
            t0 = time.perf_counter()
            try:
                reply = await conn.request(method, target, body, sse=sse)
                problem = check(reply)
            except Exception as e:
                conn.close()
                problem = f"{type(e).__name__}: {e}"
            if problem is None:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
                first_error = first_error or problem

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w, c) for w, c in enumerate(conns)))
    seconds = time.perf_counter() - t0
    return LoadResult(
        n, len(conns), seconds, latencies, errors, first_error, sum(c.connects for c in conns) - before
    )


@dataclass
class CpuWindow:
    """CPU seconds spent by each named process tree (and this process) between start and stop."""

    pids: dict[str, int]
    start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0  # fraction of the machine's CPU capacity in use
    other: float = 0.0  # ... of which not by the processes watched here (other work on the machine)

    def __enter__(self) -> CpuWindow:
        self.start = {name: tree_cpu(pid) for name, pid in self.pids.items()} | {"client": self_cpu()}
        self._m0 = machine_busy()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end = {name: tree_cpu(pid) for name, pid in self.pids.items()} | {"client": self_cpu()}
        self.used = {k: end[k] - self.start[k] for k in end}
        b1, t1 = machine_busy()
        self.busy = (b1 - self._m0[0]) / max(t1 - self._m0[1], 1)
        capacity = (time.monotonic() - self._t0) * (os.cpu_count() or 1)
        self.other = max(self.busy - sum(self.used.values()) / capacity, 0.0) if capacity else 0.0


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = " | ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*headers), "-+-".join("-" * w for w in widths)]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def wait_all(aws: list[Awaitable[Any]]) -> list[Any]:
    return await asyncio.gather(*aws)


def timed_build(settings: Any, repo: str) -> tuple[float, list[str]]:
    """A build of `repo` at main through a service run with `settings` (tests.support.service): seconds
    from the request to `ready`, and the event messages. RuntimeError if it does not end ready."""
    import httpx
    from tests.support.service import running_service, sse_messages

    with running_service(settings) as service:
        t0 = time.perf_counter()
        r = httpx.post(f"{service}api/v1/builds", json={"repo": repo, "ref": "main"}, timeout=30)
        r.raise_for_status()
        events = sse_messages(str(httpx.URL(service).join(r.json()["events_url"])), timeout=900)
        elapsed = time.perf_counter() - t0
    if events[-1]["phase"] != "ready":
        raise RuntimeError(f"build failed: {events[-3:]}")
    return elapsed, [str(e["message"]) for e in events]
