"""A PostgreSQL cluster of a session's own: Debian's server binaries, a loopback port, its own sockets."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port


def server_bin() -> Path:
    """The newest installed server's bin directory (scripts/install-system.sh installs `postgresql`)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed: run scripts/install-system.sh")
    return found[-1].parent


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb refuses root: run the server's tools as the postgres user Debian's package creates.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class Cluster:
    bin: Path
    data: Path
    sockets: Path
    port: int

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # a throwaway cluster
        )
        self._ctl("-l", str(self.data / "log"), "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "-t", "30", "stop")

    def url(self, database: str = "postgres", *, password: str = "") -> str:
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql+asyncpg://{auth}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        subprocess.run(
            [
                *_as_postgres([str(self.bin / "psql"), "-h", str(self.sockets), "-p", str(self.port)]),
                *("-U", "postgres", "-q", "-c", f"CREATE DATABASE {name}"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self.url(name)


@contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    # Under /tmp (world-traversable): the postgres user cannot enter pytest's 0700 temp dirs.
    base = Path(tempfile.mkdtemp(prefix="bs-pg-"))
    bin_dir = server_bin()
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_postgres(
            [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = Cluster(bin_dir, data, sockets, free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
