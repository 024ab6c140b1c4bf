"""Egress policy: repository hosts named by users must be public internet addresses.

A repository URL is user input, and resolving it makes the service connect somewhere: without a check,
`http://169.254.169.254/...` reads cloud metadata and `http://10.0.0.5/...` probes the private network.
So every connection made on a user's behalf goes through `EgressPolicy`, which refuses any address that
is not globally routable (loopback, RFC 1918, link-local, CGNAT, unique-local, multicast, reserved, ...)
unless `allow_private_networks` is set or the address is in `allowed_networks`.

The check is made on the address actually connected to, after DNS resolution, so a name that resolves
to a private address is refused and there is no window between check and connect (DNS rebinding):

- HTTP(S): `http_client()` gives an httpx client whose connection pool uses `EgressBackend`; it resolves
  the host itself, checks every address and connects to a checked one. Each redirect hop opens its
  connection through the same backend, so every hop is checked.
- git://: `GitRemote` calls `connect()`, which does the same for a raw stream.
- ssh: `git ls-remote` resolves the name again itself; `GitRemote` checks the name first (see
  `check_host`), which leaves a rebinding window - documented in docs/security.md.

Operator-configured endpoints (registry, Docker engine, JupyterHub, Kubernetes) use their own clients
and are not subject to this policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

import httpcore
import httpx

from ..errors import DestinationNotAllowed
from ..units import IPNetwork, parse_networks

P = TypeVar("P", bound=asyncio.BaseProtocol)

__all__ = [
    "EgressBackend",
    "EgressPolicy",
    "IPAddress",
    "egress_transport",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: an IPv4 address inside
_SHARED: Final = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_HINT: Final = "private networks are not allowed"


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind(address: IPAddress) -> str | None:
    """Why `address` is not public ("loopback address", ...); None for a global address."""
    inner = _embedded_v4(address)
    if inner is not None:
        why = _kind(inner)
        return f"{why} {inner} inside an IPv6 address" if why else None
    checks = (
        (address.is_unspecified, "unspecified address"),
        (address.is_loopback, "loopback address"),
        (address.is_link_local, "link-local address"),
        (address.is_multicast, "multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _SHARED, "shared (CGNAT) address"),
        (address.is_reserved, "reserved address"),
        (address.is_private, "private address"),
    )
    for hit, why in checks:
        if hit:
            return why
    return None if address.is_global else "non-public address"


class EgressPolicy:
    """Which addresses the service may connect to on a user's behalf."""

    def __init__(
        self, *, allow_private: bool = False, allowed_networks: Sequence[str | IPNetwork] = ()
    ) -> None:
        self.allow_private = allow_private
        self.allowed_networks: list[IPNetwork] = [
            n if not isinstance(n, str) else parse_networks([n])[0] for n in allowed_networks
        ]

    def refusal(self, address: IPAddress) -> str | None:
        """Why connecting to `address` is refused, or None when it is allowed."""
        if self.allow_private:
            return None
        inner = _embedded_v4(address)
        if any(address in net or (inner is not None and inner in net) for net in self.allowed_networks):
            return None
        return _kind(address)

    def check_address(self, address: IPAddress, *, host: str | None = None) -> None:
        """DestinationNotAllowed if `address` (which `host` resolved to, if a name) is refused."""
        why = self.refusal(address)
        if why is not None:
            shown = f"{host} ({address}, {why})" if host and host != str(address) else f"{address} ({why})"
            raise DestinationNotAllowed(f"refusing to connect to {shown}: {_HINT}")

    async def resolve(self, host: str, port: int) -> list[str]:
        """The allowed addresses `host` has, in resolver order; DestinationNotAllowed if it has none.

        An IP literal is checked without DNS; `socket.gaierror` when the name does not resolve. Callers
        bound the time (the resolver's own timeout can be long).
        """
        literal = _literal(host)
        if literal is not None:
            self.check_address(literal, host=host)
            return [str(literal)]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        allowed: list[str] = []
        first_refused: IPAddress | None = None
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
            if self.refusal(address) is None:
                if str(sockaddr[0]) not in allowed:
                    allowed.append(str(sockaddr[0]))
            elif first_refused is None:
                first_refused = address
        if not allowed:
            if first_refused is None:
                raise socket.gaierror(socket.EAI_NONAME, "host not found")
            self.check_address(first_refused, host=host)
        return allowed

    async def check_host(self, host: str) -> None:
        """Refuse a host name if ANY of its addresses is refused: for tools that resolve it again and
        pick an address themselves (ssh), so a mix of public and private addresses is refused too."""
        literal = _literal(host)
        if literal is not None:
            self.check_address(literal, host=host)
            return
        infos = await asyncio.get_running_loop().getaddrinfo(host, 22, type=socket.SOCK_STREAM)
        for *_, sockaddr in infos:
            self.check_address(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]), host=host)

    async def create_connection(
        self, protocol_factory: Callable[[], P], host: str, port: int
    ) -> tuple[asyncio.Transport, P]:
        """`loop.create_connection` to a checked address of `host` (the first that accepts)."""
        addresses = await self.resolve(host, port)
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for address in addresses:
            try:
                transport, protocol = await loop.create_connection(protocol_factory, address, port)
            except OSError as e:
                error = e
            else:
                return transport, protocol
        assert error is not None
        raise error

    def http_client(self, *, timeout: float, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
        """An httpx client whose every connection (redirect hops included) is checked by this policy.

        Environment proxies (HTTP(S)_PROXY) are not used: through a proxy the address we connect to is
        the proxy's, and the check would be meaningless.
        """
        return httpx.AsyncClient(
            transport=egress_transport(self, verify=verify), timeout=timeout, follow_redirects=False
        )


def _literal(host: str) -> IPAddress | None:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]").partition("%")[0])
    return None


class EgressBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in front: resolve, check, connect to that address."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._policy.resolve(host, port)
        except TimeoutError as e:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from e
        except OSError as e:  # gaierror: httpx turns ConnectError into its own, cause kept
            raise httpcore.ConnectError(str(e)) from e
        error: Exception | None = None
        for address in addresses:
            try:
                # TLS still verifies and sends SNI for `host`: httpcore takes those from the request URL.
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                error = e
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for repository hosts")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def egress_transport(
    policy: EgressPolicy, *, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connection pool connects only through `EgressBackend`.

    httpx has no public switch for httpcore's `network_backend`, so the transport's pool (`_pool`, the
    documented attribute every httpx transport has had since 0.18) is replaced by an equivalent pool that
    has one. `trust_env=False`: see `EgressPolicy.http_client`.
    """
    context = httpx.create_ssl_context(verify=verify, trust_env=False)  # loading CA certs: once
    # httpx's own defaults, given to both: `httpx.Limits()` alone means "no limit" to httpcore.
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False, limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=EgressBackend(policy),
    )
    return transport
