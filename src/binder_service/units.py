"""Values as operators write them: sizes (`400MB`, `2GiB`, and as we show them), IP networks
(`10.1.0.0/16`) and whether a host is this machine's. No imports of ours: the settings, the engine disk
budget, buildah's storage, its engine plugin and the egress policy all read them; this stays a leaf."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

__all__ = ["IPNetwork", "binary_size", "format_size", "is_loopback", "parse_networks", "parse_size"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", re.IGNORECASE)
_FACTORS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_FACTORS |= {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_size(text: str) -> int:
    """`400MB`, `50GB`, `1.5GiB`, `1000000` -> bytes (k/M/G/T are powers of 1000, Ki/Mi/Gi of 1024)."""
    found = _SIZE.fullmatch(text)
    if found is None or not text.strip():
        raise ValueError(f"{text!r} is not a size such as 400MB, 50GB or 2GiB")
    return int(float(found.group(1)) * _FACTORS[(found.group(2) or "").lower()])


def format_size(n: float) -> str:
    """Bytes for a person: `512 B`, `1.5 MB` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def binary_size(n: int) -> str:
    """Bytes as a limit is said: `64 MiB`, `1.5 GiB` (powers of 1024)."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n} bytes"


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """CIDRs (or single addresses) as networks; ValueError naming the bad one."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as e:
            raise ValueError(f"{value!r} is not an IP network (e.g. 10.1.0.0/16 or fd00::/8)") from e
    return networks


def is_loopback(host: str) -> bool:
    """`localhost`, a loopback address, or either with a port (`127.0.0.1:5055`, `[::1]:5000`): only this
    machine can reach it."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
