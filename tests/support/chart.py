"""The chart's tests' helpers: rendering, finding and validating the chart's objects, and the example
umbrella chart with its dependencies vendored."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart"
UMBRELLA = CHART / "examples" / "z2jh-umbrella"
STANDIN_JUPYTERHUB = ROOT / "tests" / "chart" / "standin-jupyterhub"
RELEASE, NAMESPACE = "demo", "ns1"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas at hand.
KUBE_VERSIONS = ["1.28.0", kubernetes_validate.utils.latest_version()]


def render(values: dict[str, Any] | None = None, chart: Path = CHART, **opts: Any) -> dict[str, str]:
    """Rendered templates by path (blank ones dropped), as `helm install --dry-run` would make them."""
    opts = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True, **opts}
    with helm.Chart.load(str(chart)) as loaded:
        out = loaded.render(values, **opts)
    return {path: text for path, text in out.items() if text.strip()}


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return {**data, **(secret.get("stringData") or {})}


def container(docs: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    pod = one(docs, kind)["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    container: dict[str, Any] = pod["containers"][0]
    return container


def plain_env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def lint_problems(path: Path, values: dict[str, Any] | None, **opts: Any) -> list[dict[str, Any]]:
    report = helm.lint(str(path), values, strict=True, namespace=NAMESPACE, **opts)
    # Severity 1 is information ("icon is recommended"); warnings and errors fail under strict.
    return [m for m in report["messages"] if m["severity"] >= 2] + [{"errors": e} for e in report["errors"]]


def kube_validate(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                raise AssertionError(
                    f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: "
                    f"{'.'.join(map(str, e.path))}: {e.message}"
                ) from None


def vendor_umbrella(dest: Path, standin: Path = STANDIN_JUPYTERHUB) -> Path:
    """The example umbrella chart with its dependencies vendored as `helm dependency build` would: this
    chart, and a stand-in for the jupyterhub chart (it cannot be downloaded here)."""
    path = dest / "z2jh-umbrella"
    shutil.copytree(UMBRELLA, path)
    shutil.copytree(CHART, path / "charts" / "binder-service", ignore=shutil.ignore_patterns("examples"))
    shutil.copytree(standin, path / "charts" / "jupyterhub")
    return path
