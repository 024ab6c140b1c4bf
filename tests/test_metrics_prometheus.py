"""A real Prometheus scrapes a running service through a few builds, and every query of the shipped
Grafana dashboard (docs/grafana/binder-service.json) returns data."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client import generate_latest

from binder_service.metrics import Metrics
from tests.support.gitserve import commit
from tests.support.repos import buildable_repo
from tests.support.service import sse_messages
from tests.support.waiting import wait_for_http, wait_until

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "binder-service.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prometheus(root: Path, target: str) -> Iterator[str]:
    """Prometheus on loopback scraping `target` (host:port) every second; yields its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed; run scripts/install-system.sh")
    port = _free_port()
    config = root / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: binder-service\n    static_configs:\n      - targets: ['{target}']\n"
    )
    log = open(root / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/-/ready", proc=proc, log=root / "prometheus.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def query(prom: str, expr: str) -> list[dict[str, object]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def wait_for(prom: str, expr: str, timeout: float = 60) -> None:
    """Until `expr` has a result (a comparison filters to one when it holds)."""
    wait_until(lambda: query(prom, expr), timeout=timeout, interval=0.5, what=f"Prometheus to see {expr!r}")


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_dashboard_names_only_metrics_the_service_exports() -> None:
    exported = {m.name for m in Metrics().registry.collect()}
    for expr in dashboard_queries():
        names = [w for w in _words(expr) if w.startswith(("binder_", "binderhub_"))]
        assert names, expr
        for name in names:
            base = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            base = base.removesuffix("_total")
            assert base in exported, f"{name} in {expr!r} is not exported"


def _words(expr: str) -> list[str]:
    word, words = "", []
    for ch in expr + " ":
        if ch.isalnum() or ch == "_":
            word += ch
        else:
            if word:
                words.append(word)
            word = ""
    return words


@pytest.mark.docker
def test_every_dashboard_query_returns_data(
    start_service: Callable[..., AbstractContextManager[str]],
    git_root: Path,
    git_daemon_url: str,
    tmp_path: Path,
) -> None:
    # A budget far above the engine's usage: the disk gauges are exported, nothing is pruned.
    with start_service(engine_disk_budget="100TB") as service:
        target = urlsplit(service).netloc
        with prometheus(tmp_path, target) as prom:
            wait_for(prom, 'up{job="binder-service"} == 1')  # scraping before the builds: rates see them
            name, _ = buildable_repo(git_root)
            body = {"repo": git_daemon_url + name, "ref": "main"}
            for i in range(2):  # two commits of one repository: a cold build, then one reusing layers
                if i:
                    commit(git_root / name, {"more.txt": "second commit"})
                r = httpx.post(f"{service}api/v1/builds", json=body, timeout=30)
                assert r.status_code == 201, r.text
                events = sse_messages(str(httpx.URL(service).join(r.json()["events_url"])), timeout=120)
                assert events[-1]["phase"] == "ready"
            assert httpx.post(f"{service}api/v1/builds", json=body, timeout=30).status_code == 200  # exists
            wait_for(prom, 'sum(binderhub_build_count_total{status="success"}) >= 2')
            wait_for(prom, "sum(binder_image_cache_hits_total) >= 1")

            for expr in dashboard_queries():
                assert query(prom, expr), f"no data for {expr!r}"
            hits = query(prom, 'binder_layer_cache_builds_total{result="hit"}')
            assert float(hits[0]["value"][1]) >= 1  # type: ignore[index]
            phases = {r["metric"]["phase"] for r in query(prom, "binder_build_phase_duration_seconds_count")}  # type: ignore[index]
            assert {"queued", "fetching", "building", "pushing"} <= phases


def test_phases_are_timed_from_the_events() -> None:
    from binder_service.builds.observe import BuildObserver
    from binder_service.events import Phase

    now = [100.0]
    metrics = Metrics()
    seen: list[str] = []
    obs = BuildObserver(
        metrics, lambda p, m: seen.append(m), cache_from=None, provider="git", clock=lambda: now[0]
    )
    now[0] = 103.0
    obs.started()  # 3 s in the queue
    for at, phase in (
        (103.0, Phase.FETCHING),
        (104.0, Phase.FETCHING),
        (105.0, Phase.BUILDING),
        (112.0, Phase.PUSHING),
    ):
        now[0] = at
        obs.emit(phase, "line\n")
    now[0] = 114.0
    obs.ran()
    obs.finish("ready", 11.0)
    assert obs.durations == {"queued": 3.0, "fetching": 2.0, "building": 7.0, "pushing": 2.0}
    assert len(seen) == 4  # every line still reaches the build's events
    text = generate_latest(metrics.registry).decode()
    assert 'binder_build_phase_duration_seconds_sum{phase="building"} 7.0' in text
    assert 'binderhub_build_count_total{provider="git",status="success"} 1.0' in text
    assert 'binder_layer_cache_builds_total{result="miss"} 1.0' in text
    assert "binderhub_inprogress_builds 0.0" in text
