"""What the JSON-refusing HTTP protocol (binder_service.server.HttpProtocol) costs, and how fast it refuses.

Two servers of the same app run in their own processes: uvicorn's stock httptools protocol and the one
`binder-service serve` uses. Prints, for each: keep-alive GET /versions requests per second (one client,
sequential), and the time from sending to a complete answer for a 1 MB request line (`input_too_large`)
and a non-numeric Content-Length (`invalid_request`). Needs no Docker engine. ~20 s.
"""

from __future__ import annotations

import multiprocessing
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

N_REQUESTS = 3000
N_REFUSALS = 50
ROUNDS = 5


def _serve(port: int, ours: bool) -> None:
    import uvicorn

    from binder_service.app import create_app
    from binder_service.server import server_config
    from binder_service.settings import Settings

    settings = Settings(docker_host="unix:///nonexistent.sock")
    app = create_app(settings)
    config = server_config(
        app, host="127.0.0.1", port=port, send_timeout=settings.send_timeout, log_level="error"
    )
    if not ours:
        config.http = "httptools"
    uvicorn.Server(config).run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def _read_response(conn: socket.socket, buf: bytearray) -> None:
    while b"\r\n\r\n" not in buf:
        buf += conn.recv(65536)
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = next(
        int(v)
        for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n"))
        if k.lower() == b"content-length"
    )
    while len(rest) < length:
        rest += conn.recv(65536)
    buf[:] = rest[length:]


def keepalive_rps(port: int) -> float:
    request = b"GET /versions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as conn:
        buf = bytearray()
        for _ in range(200):  # warm up
            conn.sendall(request)
            _read_response(conn, buf)
        started = time.perf_counter()
        for _ in range(N_REQUESTS):
            conn.sendall(request)
            _read_response(conn, buf)
        return N_REQUESTS / (time.perf_counter() - started)


def refusal_ms(port: int, request: bytes) -> tuple[float, bytes]:
    times, status = [], b""
    for _ in range(N_REFUSALS):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            try:
                conn.sendall(request)
                conn.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            except ConnectionResetError:
                data = b"(connection reset)"
        times.append((time.perf_counter() - started) * 1000)
        status = data.split(b"\r\n", 1)[0]
    return statistics.median(times), status


def main() -> None:
    big = b"GET /build/gh/" + b"a" * 1_000_000 + b"/r/main HTTP/1.1\r\nHost: x\r\n\r\n"
    bad_length = b"POST /api/v1/builds HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n"
    servers = {"uvicorn httptools (stock)": False, "binder-service HttpProtocol": True}
    ports, procs = {}, []
    for name, ours in servers.items():
        ports[name] = _free_port()
        procs.append(multiprocessing.Process(target=_serve, args=(ports[name], ours), daemon=True))
        procs[-1].start()
    rps: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for port in ports.values():
            _wait(port)
        for _ in range(ROUNDS):  # interleaved: a busy machine slows both alike
            for name, port in ports.items():
                rps[name].append(keepalive_rps(port))
        for name, port in ports.items():
            big_ms, big_status = refusal_ms(port, big)
            bad_ms, bad_status = refusal_ms(port, bad_length)
            print(f"{name}:")
            print(
                f"  GET /versions, keep-alive, sequential: {statistics.median(rps[name]):,.0f} req/s "
                f"(median of {ROUNDS} rounds: {', '.join(f'{r:,.0f}' for r in rps[name])})"
            )
            print(f"  1 MB request line:   {big_ms:6.2f} ms median -> {big_status.decode(errors='replace')}")
            print(f"  Content-Length: ten: {bad_ms:6.2f} ms median -> {bad_status.decode(errors='replace')}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(10)


if __name__ == "__main__":
    main()
