"""binder-service beside JupyterHub's chart (z2jh): the umbrella example, the values snippets the docs give
operators, the hub's config those values make (run as z2jh's jupyterhub_config.py runs it), and the
NetworkPolicies between the hub, its proxy and the service.

The real jupyterhub chart cannot be downloaded here; tests/chart/standin-jupyterhub follows it where the
pairing depends on it (names, the `hub` Secret's keys, pod labels, hub.baseUrl, NetworkPolicies)."""

from __future__ import annotations

import copy
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python as helm
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from traitlets.config import Config

from tests.support import netpol
from tests.support.chart import (
    CHART,
    ROOT,
    STANDIN_JUPYTERHUB,
    UMBRELLA,
    container,
    find,
    kube_validate,
    lint_problems,
    objects,
    one,
    plain_env,
    render,
    secret_data,
    vendor_umbrella,
)

NAMESPACE = "jupyter"
UMBRELLA_VALUES: dict[str, Any] = yaml.safe_load((UMBRELLA / "values.yaml").read_text())


def merged(base: dict[str, Any], over: dict[str, Any] | None) -> dict[str, Any]:
    """Helm's merge of values: maps merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def ours(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "binder-service"
    ]


def hub_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [hub] = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["spec"]["template"]["metadata"]["labels"].get("component") == "hub"
    ]
    return hub


def z2jh_hub_config(
    hub: dict[str, Any], docs: list[dict[str, Any]], env: dict[str, str], *, lazy: bool = False
) -> Config:
    """c as z2jh's jupyterhub_config.py makes it from hub values: hub.baseUrl, hub.config, hub.services (with
    their tokens from the `hub` Secret), hub.loadRoles, then every hub.extraConfig snippet, sorted by key.
    lazy: append to the lists without assigning them first (c then holds LazyConfigValues)."""
    c = Config()
    c.JupyterHub.base_url = hub.get("baseUrl", "/")
    for section, settings in (hub.get("config") or {}).items():
        c[section].update(settings)
    tokens = secret_data(one(docs, "Secret", "hub"))
    if not lazy:
        c.JupyterHub.services = []
        c.JupyterHub.load_roles = []
    for key, service in (hub.get("services") or {}).items():
        service = {k: v for k, v in service.items() if k != "apiToken"}
        service.setdefault("name", key)
        service["api_token"] = tokens[f"hub.services.{key}.apiToken"]
        c.JupyterHub.services.append(service)
    for key, role in (hub.get("loadRoles") or {}).items():
        c.JupyterHub.load_roles.append({**role, "name": role.get("name", key)})
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        for _, snippet in sorted((hub.get("extraConfig") or {}).items()):
            exec(snippet, {"c": c})
    return c


def hub_env(hub: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """hub.extraEnv as the hub pod gets it; every secretKeyRef must name a Secret and key that is rendered."""
    env: dict[str, str] = {}
    for name, value in (hub.get("extraEnv") or {}).items():
        if isinstance(value, str):
            env[name] = value
            continue
        ref = value["valueFrom"]["secretKeyRef"]
        secrets = find(docs, "Secret", ref["name"])
        assert secrets, f"hub.extraEnv.{name} names the Secret {ref['name']!r}, which neither chart renders"
        data = secret_data(secrets[0])
        assert ref["key"] in data, (
            f"hub.extraEnv.{name}: the Secret {ref['name']!r} has no key {ref['key']!r}"
        )
        env[name] = data[ref["key"]]
    return env


def check_pairing(docs: list[dict[str, Any]], hub: dict[str, Any]) -> None:
    """What makes the hub and the service work together, read off the objects both charts rendered and the
    hub's config its values make."""
    service_docs = ours(docs)
    c = container(service_docs)
    env = plain_env(c)
    name = env["JUPYTERHUB_SERVICE_NAME"]
    # The hub's base URL as z2jh uses it (its probe path), and the API under it, at z2jh's `hub` Service.
    hub_pod = hub_deployment(docs)["spec"]["template"]
    probe = hub_pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
    assert probe.endswith("/hub/health")
    base = probe.removesuffix("hub/health")
    assert env["JUPYTERHUB_BASE_URL"] == base
    api = urlsplit(env["JUPYTERHUB_API_URL"])
    hub_svc = one(docs, "Service", api.hostname)
    assert hub_svc["spec"]["selector"].items() <= hub_pod["metadata"]["labels"].items()
    assert api.port in [p["port"] for p in hub_svc["spec"]["ports"]]
    assert api.path == f"{base}hub/api"
    # The service serves the prefix the hub's proxy forwards, and is probed and called back there.
    prefix = f"{base}services/{name}/"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == prefix
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == f"{prefix}oauth_callback"
    assert c["readinessProbe"]["httpGet"]["path"].startswith(prefix)
    assert c["livenessProbe"]["httpGet"]["path"].startswith(prefix)
    # The hub lists the service at our Service; its token is where the service reads it.
    url = urlsplit(hub["services"][name]["url"])
    svc = one(service_docs, "Service", url.hostname)
    assert url.port == svc["spec"]["ports"][0]["port"]
    pod_labels = one(service_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    [token] = [e for e in c["env"] if e["name"] == "JUPYTERHUB_API_TOKEN"]
    ref = token["valueFrom"]["secretKeyRef"]
    assert ref["key"] in secret_data(one(docs, "Secret", ref["name"])), ref
    # The hub's config: one service of that name, custom scopes defined, the spawner pointed at us.
    config = z2jh_hub_config(hub, docs, hub_env(hub, docs))
    [entry] = [s for s in config.JupyterHub.services if s["name"] == name]
    for key, value in hub["services"][name].items():
        if key != "apiToken":
            assert entry[key] == value, f"hub.services.{name}.{key} was not kept"
    custom = set(config.JupyterHub.custom_scopes)
    for role in config.JupyterHub.load_roles:
        assert {s for s in role["scopes"] if s.startswith("custom:")} <= custom, role
    assert config.BuildFromRepoMixin.binder_service_url == f"http://{url.netloc}{prefix}"


# --- the umbrella ------------------------------------------------------------------------------------------


def test_umbrella_pairs_the_service_with_the_hub(umbrella: Path) -> None:
    assert [d["status"] for d in helm.dependency_list(str(umbrella))] == ["unpacked", "unpacked"]
    assert lint_problems(umbrella, None, with_subcharts=True) == []
    docs = objects(render(None, chart=umbrella, name="hub", namespace=NAMESPACE))
    kube_validate(ours(docs))
    check_pairing(docs, UMBRELLA_VALUES["jupyterhub"]["hub"])
    env = plain_env(container(ours(docs)))
    assert env["JUPYTERHUB_API_URL"] == "http://hub:8081/hub/api"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/services/binder/"


def test_umbrella_under_a_base_url(umbrella: Path) -> None:
    values = {
        "jupyterhub": {"hub": {"baseUrl": "/jh/"}},
        "binder-service": {"jupyterhub": {"baseUrl": "/jh"}},
    }
    docs = objects(render(values, chart=umbrella, name="hub", namespace=NAMESPACE))
    check_pairing(docs, merged(UMBRELLA_VALUES, values)["jupyterhub"]["hub"])
    env = plain_env(container(ours(docs)))
    assert env["JUPYTERHUB_API_URL"] == "http://hub:8081/jh/hub/api"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/jh/services/binder/"


def test_umbrella_refuses_base_urls_that_differ(umbrella: Path) -> None:
    """Helm cannot hand z2jh's hub.baseUrl to binder-service: the umbrella says so instead of rendering
    a service whose API URL, prefix, callback and probes all miss the hub."""
    with pytest.raises(helm.HelmRenderError, match=r"jupyterhub.hub.baseUrl \(/jh/\) and binder-service"):
        render({"jupyterhub": {"hub": {"baseUrl": "/jh/"}}}, chart=umbrella, name="hub", namespace=NAMESPACE)
    # Also when the toggles are null (Helm then enables both dependencies).
    values: dict[str, Any] = {
        "jupyterhub": {"enabled": None, "hub": {"baseUrl": "/jh/"}},
        "binder-service": {"enabled": None},
    }
    with pytest.raises(helm.HelmRenderError, match=r"jupyterhub.hub.baseUrl \(/jh/\) and binder-service"):
        render(values, chart=umbrella, name="hub", namespace=NAMESPACE)


@pytest.mark.parametrize("lazy", [False, True], ids=["services-list", "services-appended"])
def test_umbrella_hub_config_keeps_what_the_operator_set(umbrella: Path, lazy: bool) -> None:
    """The extraConfig adopts z2jh's hub.services.binder: display, info, oauth_client_allowed_scopes and the
    rest stay as the operator set them."""
    extra = {
        "display": True,
        "info": {"docs": "https://example.org/binder"},
        "oauth_client_allowed_scopes": ["read:users:name!user"],
    }
    values = {"jupyterhub": {"hub": {"services": {"binder": extra}}}}
    docs = objects(render(values, chart=umbrella, name="hub", namespace=NAMESPACE))
    hub = merged(UMBRELLA_VALUES, values)["jupyterhub"]["hub"]
    check_pairing(docs, hub)
    c = z2jh_hub_config(hub, docs, {}, lazy=lazy)
    [binder] = [s for s in c.JupyterHub.services if s["name"] == "binder"]
    assert binder == {
        **UMBRELLA_VALUES["jupyterhub"]["hub"]["services"]["binder"],
        **extra,
        "name": "binder",
        "api_token": secret_data(one(docs, "Secret", "hub"))["hub.services.binder.apiToken"],
    }
    assert c.JupyterHub.spawner_class == "binder_service_hub.kubernetes.BinderKubeSpawner"
    [user] = [r for r in c.JupyterHub.load_roles if r["name"] == "user"]
    assert user["scopes"] == ["self", "access:services!service=binder", "custom:binder:build"]


def test_umbrella_renders_without_either_chart(umbrella: Path) -> None:
    """The dependencies' conditions: jupyterhub.enabled and binder-service.enabled (whose `enabled: true`
    binder-service's schema must accept)."""
    docs = objects(
        render({"jupyterhub": {"enabled": False}}, chart=umbrella, name="hub", namespace=NAMESPACE)
    )
    assert not find(docs, "Service", "hub")
    assert one(docs, "Deployment", "binder")
    docs = objects(
        render({"binder-service": {"enabled": False}}, chart=umbrella, name="hub", namespace=NAMESPACE)
    )
    assert one(docs, "Service", "hub")
    assert not ours(docs)


# --- which z2jh versions ---------------------------------------------------------------------------------

# What z2jh releases ship in their hub image (images/hub/requirements.txt of each tag).
Z2JH_SHIPS = {
    "3.3.8": {"jupyterhub": "4.1.6", "jupyterhub-kubespawner": "6.2.0"},
    "4.0.0": {"jupyterhub": "5.2.1", "jupyterhub-kubespawner": "7.0.0"},
    "4.4.0": {"jupyterhub": "5.4.3", "jupyterhub-kubespawner": "7.0.0"},
}


def _hub_extension_supports(ships: dict[str, str]) -> bool:
    project = tomllib.loads((ROOT / "hub_extension" / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for r in project["optional-dependencies"]["kubernetes"]]
    return all(Version(ships[r.name]) in r.specifier for r in requirements if r.name in ships)


@pytest.mark.parametrize("z2jh", sorted(Z2JH_SHIPS, key=lambda v: Version(str(v))))
def test_umbrella_accepts_exactly_the_z2jh_versions_the_hub_extension_supports(
    z2jh: str, tmp_path: Path
) -> None:
    standin = tmp_path / "standin"
    shutil.copytree(STANDIN_JUPYTERHUB, standin)
    meta = standin / "Chart.yaml"
    meta.write_text(re.sub(r"(?m)^version: .*$", f"version: {z2jh}", meta.read_text()))
    chart = vendor_umbrella(tmp_path, standin)
    [status] = [d["status"] for d in helm.dependency_list(str(chart)) if d["name"] == "jupyterhub"]
    assert status == ("unpacked" if _hub_extension_supports(Z2JH_SHIPS[z2jh]) else "wrong version")


# --- NetworkPolicies between hub, proxy and the service ---------------------------------------------------

HARDENED = {"egressAllowRules": {"privateIPs": False}}


def _pods_and_policies(
    umbrella: Path, values: dict[str, Any] | None
) -> tuple[dict[str, netpol.Pod], list[dict[str, Any]]]:
    docs = objects(render(values, chart=umbrella, name="hub", namespace=NAMESPACE))
    pods = netpol.pods_from(docs, NAMESPACE)
    env = secret_data(one(docs, "Secret", "binder-config"))
    build_labels = {"app.kubernetes.io/name": "binder-service", "app.kubernetes.io/component": "build"}
    build_labels.update(yaml.safe_load(env["BINDER_SERVICE_K8S_BUILD_LABELS"]))
    pods["build"] = netpol.Pod("build", NAMESPACE, build_labels, ip="10.1.0.99")
    return pods, find(docs, "NetworkPolicy")


@pytest.mark.parametrize("cilium", [True, False], ids=["cilium", "calico"])
@pytest.mark.parametrize("hardened", [True, False], ids=["privateIPs-off", "privateIPs-on"])
def test_hub_and_proxy_reach_the_service_by_pod_labels(umbrella: Path, cilium: bool, hardened: bool) -> None:
    values = {
        "jupyterhub": {"hub": {"networkPolicy": HARDENED}, "proxy": {"chp": {"networkPolicy": HARDENED}}}
    }
    pods, policies = _pods_and_policies(umbrella, values if hardened else None)
    ipblocks = not cilium

    def ok(source: str, dest: str, port: int) -> bool:
        return netpol.allowed(policies, pods[source], pods[dest], port, ipblock_selects_pods=ipblocks)

    assert ok("proxy", "binder", 8585)  # users' requests to /services/binder/
    assert ok("hub", "binder", 8585)  # the spawner's build requests, the hub's service check
    assert ok("binder", "hub", 8081)  # the service asks the hub who a token is
    # Nothing connects to build pods or docker-api.
    for source in ("proxy", "hub", "binder"):
        assert not ok(source, "build", 8888)
        assert not ok(source, "binder-docker-api", 2375)


def test_without_the_pod_label_rules_cilium_cuts_the_service_off(umbrella: Path) -> None:
    """What the umbrella's hub/proxy networkPolicy.egress rules are for: z2jh's own rules reach the service
    only through the privateIPs ipBlock."""
    values = {
        "jupyterhub": {
            "hub": {"networkPolicy": {"egress": []}},
            "proxy": {"chp": {"networkPolicy": {"egress": []}}},
        }
    }
    pods, policies = _pods_and_policies(umbrella, values)
    for source in ("proxy", "hub"):
        assert not netpol.allowed(policies, pods[source], pods["binder"], 8585, ipblock_selects_pods=False)
        assert netpol.allowed(policies, pods[source], pods["binder"], 8585, ipblock_selects_pods=True)


# --- the docs' values snippets -----------------------------------------------------------------------------

DOCS = [ROOT / "docs" / "chart.md", ROOT / "docs" / "jupyterhub.md"]
# A YAML block marked `% test: <kind> [<group>]` right above it: `umbrella` values for the example umbrella,
# `chart` values for binder-service alone, `jupyterhub` values for z2jh alone; a `chart` and a `jupyterhub`
# block of one group are installed side by side (releases binder-service and jupyterhub, one namespace).
MARKED = re.compile(r"^% test: (?P<kind>\w+)(?: (?P<group>[\w-]+))?\n```yaml\n(?P<body>.*?)^```", re.M | re.S)


def _snippets() -> list[tuple[str, str, str | None, dict[str, Any]]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for m in MARKED.finditer(text):
            found.append((f"{doc.name}:{text[: m.start()].count(chr(10)) + 1}", m["kind"], m["group"], m))
    return [(where, kind, group, yaml.safe_load(m["body"])) for where, kind, group, m in found]


SNIPPETS = _snippets()


def test_every_values_block_in_the_docs_is_tested() -> None:
    for doc in DOCS:
        blocks = len(re.findall(r"^```yaml$", doc.read_text(), re.M))
        marked = len(MARKED.findall(doc.read_text()))
        assert blocks == marked, f"{doc.name}: {blocks - marked} YAML block(s) without a `% test:` line"
    assert {kind for _, kind, _, _ in SNIPPETS} == {"umbrella", "chart", "jupyterhub"}


@pytest.mark.parametrize(
    ("kind", "values"),
    [(kind, values) for _, kind, group, values in SNIPPETS if group is None],
    ids=[where for where, _, group, _ in SNIPPETS if group is None],
)
def test_docs_snippet_renders_and_pairs(umbrella: Path, kind: str, values: dict[str, Any]) -> None:
    if kind == "umbrella":
        assert lint_problems(umbrella, values, with_subcharts=True) == []
        docs = objects(render(values, chart=umbrella, name="hub", namespace=NAMESPACE))
        kube_validate(ours(docs))
        check_pairing(docs, merged(UMBRELLA_VALUES, values)["jupyterhub"]["hub"])
    else:
        assert kind == "chart", kind
        assert lint_problems(CHART, values) == []
        kube_validate(objects(render(values, name="binder-service", namespace=NAMESPACE)))


GROUPS = sorted({group for _, _, group, _ in SNIPPETS if group})


@pytest.mark.parametrize("group", GROUPS)
def test_docs_snippets_installed_side_by_side_pair(group: str) -> None:
    blocks = [(kind, values) for _, kind, g, values in SNIPPETS if g == group]
    [chart_values] = [v for k, v in blocks if k == "chart"]
    hub_blocks = [v for k, v in blocks if k == "jupyterhub"]
    assert hub_blocks, group
    assert lint_problems(CHART, chart_values) == []
    service_docs = objects(render(chart_values, name="binder-service", namespace=NAMESPACE))
    kube_validate(service_docs)
    for hub_values in hub_blocks:
        assert lint_problems(STANDIN_JUPYTERHUB, hub_values) == []
        hub_docs = objects(
            render(hub_values, chart=STANDIN_JUPYTERHUB, name="jupyterhub", namespace=NAMESPACE)
        )
        check_pairing(service_docs + hub_docs, merged({"baseUrl": "/"}, hub_values["hub"]))
