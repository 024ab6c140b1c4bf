"""Sizes as operators write them (`400MB`, `2GiB`) and as we show them. No imports: settings, the engine
disk budget and buildah's storage all read sizes, and this stays a leaf they can share."""

from __future__ import annotations

import re

__all__ = ["format_size", "parse_size"]

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
