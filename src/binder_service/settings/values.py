"""Values in settings as operators write them, and the parsing the setting groups share."""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated

from pydantic import BeforeValidator, SecretStr, ValidationError, WithJsonSchema
from pydantic_settings import NoDecode


def split_list(value: object) -> object:
    # "a,b c" from an environment variable; JSON lists and real lists pass through.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part for part in text.replace(",", " ").split() if part]
    return value


def split_policy_list(value: object) -> object:
    if isinstance(value, str) and not value.strip().startswith("["):
        return value.split()  # regexes and credentials may hold commas: split on whitespace only
    return split_list(value)


ORIGIN = re.compile(r"https?://[^/\s?#@]+")  # an origin as browsers send it: no path, no user

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """`7d`, `12h`, `90m`, `30s`, `2w` or plain seconds -> seconds; `0` means forever."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], 0) if value else 0
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h, 90m or 30s") from None
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{text!r} must be 0 (forever) or a positive duration")
    return seconds


class UnsafeSettings(ValueError):
    """A combination of settings the service refuses to run with (the CLI shows it as it is)."""


def describe_invalid(error: ValidationError) -> str:
    """A ValidationError of Settings as the CLI prints it. A refusal (`UnsafeSettings`) is one line that
    says what to do; a rule across fields is its message alone (pydantic would show the input, whose
    secrets a truncated repr may still reveal); a bad field is pydantic's list of what is wrong."""
    whole = [e.get("ctx", {}).get("error") or e["msg"] for e in error.errors() if not e["loc"]]
    unsafe = [str(e) for e in whole if isinstance(e, UnsafeSettings)]
    if unsafe:
        return unsafe[0]
    if whole:
        return "invalid configuration: " + "; ".join(str(e) for e in whole)
    return f"invalid configuration:\n{error}"


# Parsed fields keep their typed values; their schema (the chart's values.schema.json) stays what is set.
STRINGS = WithJsonSchema({"items": {"type": "string"}, "type": "array"})
OBJECTS = WithJsonSchema({"items": {"additionalProperties": True, "type": "object"}, "type": "array"})
IPNetwork = IPv4Network | IPv6Network


# A Localhost seccomp profile: a relative path under the kubelet's seccomp directory.
PROFILE_NAME = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
APPARMOR_NAME = re.compile(r"[A-Za-z0-9._-]+")
# A Kubernetes quantity for a size (emptyDir sizeLimit): 20Gi, 500M, 1e9.
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE]|e[0-9]+)?")


# A list as an environment variable gives it ("a,b c", or a JSON list): split before it is validated.
Words = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
SecretWords = Annotated[list[SecretStr], NoDecode, BeforeValidator(split_list)]
