"""The egress policy: non-public destinations are refused after DNS, on every redirect, before connecting."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpcore
import httpx
import pytest

from binder_service.errors import DestinationNotAllowed, RepoUnreachable
from binder_service.providers.git.remote import GitRemote
from binder_service.providers.github import github_api
from binder_service.security.destinations import DestinationCheck
from binder_service.security.egress import EgressBackend, EgressPolicy, egress_transport
from tests.support.clock import FakeClock
from tests.support.gitserve import make_repo, serve_threaded
from tests.support.service import sse_messages

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("100.64.0.1", "CGNAT"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fd00::1", "private"),  # unique-local
    ("fe80::1", "link-local"),
    ("::ffff:127.0.0.1", "loopback address 127.0.0.1 inside an IPv6 address"),
    ("::ffff:169.254.169.254", "link-local"),
    ("2002:a00:1::", "private address 10.0.0.1 inside"),  # 6to4 of 10.0.0.1
    ("64:ff9b::7f00:1", "loopback address 127.0.0.1 inside"),  # NAT64 of 127.0.0.1
]
PUBLIC = ["8.8.8.8", "140.82.112.3", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    policy = EgressPolicy()
    reason = policy.refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert why in reason
    with pytest.raises(DestinationNotAllowed, match="private networks are not allowed") as info:
        policy.check_address(ipaddress.ip_address(address))
    assert info.value.code == "destination_not_allowed"
    assert info.value.status == 403
    # The flag opens them all.
    assert EgressPolicy(allow_private=True).refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert EgressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_open_only_themselves() -> None:
    policy = EgressPolicy(allowed_networks=["10.20.0.0/16", "fd12::/16"])
    assert policy.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:10.20.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("fd12::5")) is None
    assert policy.refusal(ipaddress.ip_address("10.21.0.1")) is not None
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) is not None


async def test_names_are_checked_after_dns() -> None:
    policy = EgressPolicy()
    with pytest.raises(DestinationNotAllowed, match=r"localhost \((127\.0\.0\.1|::1), loopback address\)"):
        await policy.resolve("localhost", 80)
    assert await EgressPolicy(allow_private=True).resolve("localhost", 80)
    assert await EgressPolicy(allowed_networks=["127.0.0.0/8", "::1/128"]).resolve("localhost", 80)


# --- nothing is connected to ------------------------------------------------------------------------


@contextlib.contextmanager
def listener(host: str = "127.0.0.1") -> Iterator[tuple[int, Callable[[], int]]]:
    """A listening socket and a function counting the connections made to it so far."""
    with socket.socket() as s:
        s.bind((host, 0))
        s.listen(16)
        s.setblocking(False)
        accepted = 0

        def count() -> int:
            nonlocal accepted
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    return accepted
                conn.close()
                accepted += 1

        yield int(s.getsockname()[1]), count


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_http_client_refuses_before_connecting(host: str) -> None:
    with listener() as (port, accepted):
        async with EgressPolicy().http_client(timeout=2) as client:
            with pytest.raises(DestinationNotAllowed, match="refusing to connect to"):
                await client.get(f"http://{host}:{port}/")
        assert accepted() == 0
        # The same request with the flag really connects: the listener counted nothing above for a reason.
        async with EgressPolicy(allow_private=True).http_client(timeout=0.5) as client:
            with contextlib.suppress(httpx.TimeoutException):
                await client.get(f"http://127.0.0.1:{port}/")
        assert accepted() == 1


async def test_git_daemon_refused_before_connecting(git_root: Path, git_daemon_url: str) -> None:
    commit = make_repo(git_root, "egress-daemon", {"a.txt": "a"})
    with listener() as (port, accepted):
        remote = GitRemote(httpx.AsyncClient(), timeout=2, egress=EgressPolicy())
        with pytest.raises(DestinationNotAllowed, match="loopback"):
            await remote.resolve(f"git://127.0.0.1:{port}/x", "main")
        with pytest.raises(DestinationNotAllowed):
            await remote.resolve(f"git://localhost:{port}/x", "main")
        assert accepted() == 0
    # Allowed: the same code path really resolves against git daemon.
    allowed = GitRemote(httpx.AsyncClient(), timeout=2, egress=EgressPolicy(allow_private=True))
    assert await allowed.resolve(git_daemon_url + "egress-daemon", "main") == commit


@pytest.mark.parametrize("url", ["ssh://git@127.0.0.1/repo.git", "git@localhost:repo.git", "git@[::1]:repo"])
async def test_ssh_host_refused_before_running_ssh(url: str) -> None:
    remote = GitRemote(httpx.AsyncClient(), timeout=2, egress=EgressPolicy())
    with pytest.raises(DestinationNotAllowed, match="private networks are not allowed"):
        await remote.resolve(url, "main")


# --- redirects ----------------------------------------------------------------------------------------


class _Redirect(BaseHTTPRequestHandler):
    target = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def redirector(host: str, target: str) -> Iterator[str]:
    handler = type("Handler", (_Redirect,), {"target": target})
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    with serve_threaded(server):
        yield f"http://{host}:{server.server_address[1]}/"


async def test_redirect_to_a_private_address_is_refused() -> None:
    # 127.0.0.2 stands for an allowed host (e.g. an on-premises GitLab); 127.0.0.1 for a private one.
    policy = EgressPolicy(allowed_networks=["127.0.0.2/32"])
    with listener() as (port, accepted), redirector("127.0.0.2", f"http://127.0.0.1:{port}/repo") as start:
        async with policy.http_client(timeout=2) as client:
            remote = GitRemote(client, timeout=2, egress=policy)
            with pytest.raises(DestinationNotAllowed, match=r"127\.0\.0\.1 \(loopback address\)"):
                await remote.resolve(start + "repo", "main")
            # The first hop was allowed and answered: only the second was refused.
            first = await client.get(start + "x")
            assert first.status_code == 302
        assert accepted() == 0


async def test_api_provider_refused_on_a_private_address() -> None:
    with listener() as (port, accepted):
        async with EgressPolicy().http_client(timeout=2) as client:
            api = github_api(client, api_url=f"http://127.0.0.1:{port}", token=None, timeout=2)
            with pytest.raises(DestinationNotAllowed):
                await api.get("/repos/org/repo")
        assert accepted() == 0


async def test_unknown_host_is_a_clear_error() -> None:
    async with EgressPolicy().http_client(timeout=2) as client:
        remote = GitRemote(client, timeout=2, egress=EgressPolicy())
        with pytest.raises(RepoUnreachable, match="host not found"):
            await remote.resolve("https://no-such-host.invalid/repo", "main")


@pytest.mark.parametrize(
    "url",
    ["ssh://git@no-such-host.invalid/r", "GIT+SSH://no-such-host.invalid/r", "git@no-such-host.invalid:x"],
)
async def test_a_build_destination_ssh_cannot_resolve_is_left_to_ssh(url: str) -> None:
    """The name may be a Host alias in ssh's own config, as `git ls-remote` treats it."""
    await DestinationCheck(EgressPolicy(), timeout=5).check(url)


@pytest.mark.parametrize("url", ["https://no-such-host.invalid/r", "git://no-such-host.invalid/r"])
async def test_a_build_destination_that_cannot_resolve_is_unreachable(url: str) -> None:
    with pytest.raises(RepoUnreachable, match="host not found"):
        await DestinationCheck(EgressPolicy(), timeout=5).check(url)


class CountingPolicy(EgressPolicy):
    """The real policy, counting the host checks (each one a DNS lookup for a name)."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[str] = []

    async def check_host(self, host: str) -> None:
        self.lookups.append(host)
        await super().check_host(host)


async def test_a_hosts_verdict_is_kept_for_a_while_and_lookup_failures_never() -> None:
    policy, clock = CountingPolicy(), FakeClock(0.0)
    check = DestinationCheck(policy, timeout=5, ttl=30, clock=clock)
    for _ in range(3):  # the cached path: one lookup, the same refusal each time
        with pytest.raises(DestinationNotAllowed, match=r"refusing to connect to localhost \("):
            await check.check("https://localhost/org/repo")
    assert policy.lookups == ["localhost"]
    clock.now += 31  # the name may point elsewhere by now: asked again
    with pytest.raises(DestinationNotAllowed):
        await check.check("git://localhost/repo")
    assert policy.lookups == ["localhost", "localhost"]
    for _ in range(2):
        with pytest.raises(RepoUnreachable, match="host not found"):
            await check.check("https://no-such-host.invalid/r")
    assert policy.lookups.count("no-such-host.invalid") == 2


# --- through the API ----------------------------------------------------------------------------------


@pytest.mark.docker
def test_metadata_address_through_both_api_faces(
    start_service: Callable[..., AbstractContextManager[str]],
) -> None:
    with start_service(allow_private_networks=False) as service:
        spec = quote("http://169.254.169.254/repo", safe="")
        events = sse_messages(f"{service}build/git/{spec}/main?build_only=true", timeout=30)
        assert [e["phase"] for e in events] == ["failed"]
        assert events[0]["code"] == "destination_not_allowed"
        assert "169.254.169.254 (link-local address)" in events[0]["message"]

        r = httpx.post(f"{service}api/v1/builds", json={"repo": "http://localhost/repo"}, timeout=30)
        assert r.status_code == 403
        assert r.json()["code"] == "destination_not_allowed"
        assert "private networks are not allowed" in r.json()["message"]

        # Operator-configured endpoints are not subject to the policy: the registry on 127.0.0.1 answers.
        health = httpx.get(f"{service}health", timeout=30)
        assert health.status_code == 200, health.text


@pytest.mark.docker
def test_a_commit_id_does_not_skip_the_destination_check(
    start_service: Callable[..., AbstractContextManager[str]], git_root: Path, git_daemon_url: str
) -> None:
    """A full commit id needs no resolution, so no resolver connection checked it: the build's own
    destination is checked anyway, on both faces, and nothing connects to the internal host."""
    make_repo(git_root, "egress-sha", {"Dockerfile": "FROM scratch\n"})
    sha = "a" * 40
    with start_service(allow_private_networks=False) as service, listener() as (port, accepted):
        internal = quote(f"http://127.0.0.1:{port}/internal", safe="")
        events = sse_messages(f"{service}build/git/{internal}/{sha}?build_only=true", timeout=30)
        assert [(e["phase"], e["code"]) for e in events] == [("failed", "destination_not_allowed")]
        assert "127.0.0.1 (loopback address)" in events[0]["message"]

        body = {"repo": f"{git_daemon_url}egress-sha", "ref": sha}
        r = httpx.post(f"{service}api/v1/builds", json=body, timeout=30)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "destination_not_allowed"
        body = {"repo": f"http://localhost:{port}/internal", "ref": "b" * 40}
        r = httpx.post(f"{service}api/v1/builds", json=body, timeout=30)
        assert r.json()["code"] == "destination_not_allowed", r.text
        assert accepted() == 0


# httpx's private `_pool` (egress_transport replaces it): pinned in pyproject.toml, guarded here.
_POOL_STATE = ("_ssl_context", "_network_backend", "_connections", "_requests", "_optional_thread_lock")


def test_the_egress_pool_is_the_one_httpx_would_build_but_for_its_backend() -> None:
    """Fails on an httpx upgrade that renames `_pool`, or builds its pool with options we do not copy."""
    plain = httpx.AsyncHTTPTransport(trust_env=False)
    ours = egress_transport(EgressPolicy())
    assert type(plain._pool) is type(ours._pool) is httpcore.AsyncConnectionPool
    assert isinstance(ours._pool._network_backend, EgressBackend)

    def options(pool: httpcore.AsyncConnectionPool) -> dict[str, object]:
        return {k: v for k, v in vars(pool).items() if k not in _POOL_STATE}

    assert options(ours._pool) == options(plain._pool)
    assert set(vars(plain._pool)) == set(vars(ours._pool))


async def test_requests_go_through_the_replaced_pool() -> None:
    # The transport sends through `_pool`: the policy (in its backend) refuses before any connection.
    with listener() as (port, accepted):
        async with httpx.AsyncClient(transport=egress_transport(EgressPolicy()), timeout=2) as client:
            with pytest.raises(DestinationNotAllowed):
                await client.get(f"http://127.0.0.1:{port}/")
        assert accepted() == 0
