"""Kubernetes objects checked against the API's OpenAPI schemas (kubernetes-validate's, strict: an unknown
field is an error), for the oldest Kubernetes we support and the newest schemas at hand. The chart tests and
the API fake (tests/support/fake_k8s.py) use the same check, so the fake refuses what a real API server would.

kubernetes-validate reads its (large) schema files on every call; here each validator is built once.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs; kubernetes-validate's dependency
import kubernetes_validate.utils as kv
from referencing import Registry, Resource

# The oldest Kubernetes the chart supports (chart/Chart.yaml kubeVersion) and the newest schemas at hand.
KUBE_VERSIONS = ["1.28.0", kv.latest_version()]


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> Any:
    # As kubernetes_validate.validate does it: `rbac.authorization.k8s.io/v1` -> `rbac-v1`.
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_version = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)][-1]
    folder = f"kubernetes-json-schema/v{schema_version}-local-strict"
    schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    definitions = kv.schema_contents(f"{folder}/_definitions.json", version)
    registry: Registry[Any] = Resource.from_contents(definitions) @ (
        Resource.from_contents(schema) @ Registry()
    )
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """What is wrong with `obj` for each Kubernetes version (empty: valid for all), one line per error."""
    errors: list[str] = []
    for version in KUBE_VERSIONS:
        try:
            validator = _validator(version, str(obj["kind"]), str(obj["apiVersion"]))
        except FileNotFoundError:
            errors.append(f"Kubernetes {version} has no {obj['apiVersion']} {obj['kind']}")
            continue
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
            where = ".".join(map(str, e.path)) or "(the object)"
            errors.append(f"Kubernetes {version}: {where}: {e.message}")
    return errors


def assert_valid(obj: dict[str, Any]) -> None:
    errors = schema_errors(obj)
    name = (obj.get("metadata") or {}).get("name")
    assert not errors, f"{obj.get('kind')}/{name} is invalid:\n" + "\n".join(errors)
