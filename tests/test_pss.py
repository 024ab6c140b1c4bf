"""The Pod Security Standards baseline evaluator of the tests (tests/support/pss.py), rule by rule: each
refused field is found, and what baseline allows passes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.pss import BASELINE_CAPABILITIES, baseline_violations, pod_of

Pod = dict[str, Any]


def pod() -> Pod:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {}},
        "spec": {
            "containers": [{"name": "c", "image": "i", "securityContext": {}}],
            "initContainers": [{"name": "init", "image": "i"}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }


def spec(p: Pod) -> dict[str, Any]:
    s: dict[str, Any] = p["spec"]
    return s


def ctx(p: Pod) -> dict[str, Any]:
    c: dict[str, Any] = p["spec"]["containers"][0]["securityContext"]
    return c


def pod_ctx(p: Pod) -> dict[str, Any]:
    c: dict[str, Any] = p["spec"].setdefault("securityContext", {})
    return c


REFUSED: list[tuple[str, Callable[[Pod], None], str]] = [
    ("hostNetwork", lambda p: spec(p).update(hostNetwork=True), "spec.hostNetwork"),
    ("hostPID", lambda p: spec(p).update(hostPID=True), "spec.hostPID"),
    ("hostIPC", lambda p: spec(p).update(hostIPC=True), "spec.hostIPC"),
    (
        "hostPath",
        lambda p: spec(p)["volumes"].append({"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}),
        "volume sock is a hostPath",
    ),
    (
        "hostPort",
        lambda p: spec(p)["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 8080}]),
        "hostPort 8080",
    ),
    ("privileged", lambda p: ctx(p).update(privileged=True), "containers[c].securityContext.privileged"),
    (
        "privileged init container",
        lambda p: spec(p)["initContainers"][0].update(securityContext={"privileged": True}),
        "initContainers[init].securityContext.privileged",
    ),
    (
        "privileged ephemeral container",
        lambda p: spec(p).update(
            ephemeralContainers=[{"name": "dbg", "image": "i", "securityContext": {"privileged": True}}]
        ),
        "ephemeralContainers[dbg]",
    ),
    ("SYS_ADMIN", lambda p: ctx(p).update(capabilities={"add": ["SYS_ADMIN", "SETUID"]}), "adds SYS_ADMIN"),
    ("NET_RAW", lambda p: ctx(p).update(capabilities={"add": ["NET_RAW"]}), "adds NET_RAW"),
    ("ALL", lambda p: ctx(p).update(capabilities={"add": ["ALL"]}), "adds ALL"),
    ("Unmasked /proc", lambda p: ctx(p).update(procMount="Unmasked"), "procMount is Unmasked"),
    (
        "Unconfined seccomp (container)",
        lambda p: ctx(p).update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile is Unconfined",
    ),
    (
        "Unconfined seccomp (pod)",
        lambda p: pod_ctx(p).update(seccompProfile={"type": "Unconfined"}),
        "spec.securityContext.seccompProfile is Unconfined",
    ),
    (
        "Unconfined seccomp (annotation)",
        lambda p: p["metadata"]["annotations"].update(
            {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}
        ),
        "annotation seccomp.security.alpha.kubernetes.io/pod",
    ),
    (
        "unconfined AppArmor (field)",
        lambda p: ctx(p).update(appArmorProfile={"type": "Unconfined"}),
        "appArmorProfile is Unconfined",
    ),
    (
        "unconfined AppArmor (annotation)",
        lambda p: p["metadata"]["annotations"].update(
            {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}
        ),
        "AppArmor: annotation",
    ),
    (
        "unsafe sysctl",
        lambda p: pod_ctx(p).update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "kernel.msgmax",
    ),
    (
        "SELinux type",
        lambda p: ctx(p).update(seLinuxOptions={"type": "spc_t"}),
        "seLinuxOptions.type is spc_t",
    ),
    ("SELinux user", lambda p: ctx(p).update(seLinuxOptions={"user": "system_u"}), "seLinuxOptions.user"),
    ("SELinux role", lambda p: pod_ctx(p).update(seLinuxOptions={"role": "sysadm_r"}), "seLinuxOptions.role"),
    (
        "HostProcess",
        lambda p: ctx(p).update(windowsOptions={"hostProcess": True}),
        "windowsOptions.hostProcess",
    ),
]

ALLOWED: list[tuple[str, Callable[[Pod], None]]] = [
    ("nothing set", lambda p: None),
    (
        "every baseline capability, ALL dropped",
        lambda p: ctx(p).update(
            capabilities={
                "drop": ["ALL"],
                "add": sorted(BASELINE_CAPABILITIES),
            }
        ),
    ),
    ("allowPrivilegeEscalation (a restricted rule)", lambda p: ctx(p).update(allowPrivilegeEscalation=True)),
    ("runs as root (a restricted rule)", lambda p: ctx(p).update(runAsUser=0)),
    (
        "Localhost seccomp",
        lambda p: ctx(p).update(seccompProfile={"type": "Localhost", "localhostProfile": "x"}),
    ),
    ("RuntimeDefault seccomp", lambda p: pod_ctx(p).update(seccompProfile={"type": "RuntimeDefault"})),
    ("procMount Default", lambda p: ctx(p).update(procMount="Default")),
    ("hostPort 0", lambda p: spec(p)["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 0}])),
    (
        "safe sysctl",
        lambda p: pod_ctx(p).update(sysctls=[{"name": "net.ipv4.ping_group_range", "value": "0 1"}]),
    ),
    (
        "SELinux container_t and a level",
        lambda p: ctx(p).update(seLinuxOptions={"type": "container_t", "level": "s0"}),
    ),
    ("AppArmor runtime/default", lambda p: ctx(p).update(appArmorProfile={"type": "RuntimeDefault"})),
    (
        "AppArmor localhost annotation",
        lambda p: p["metadata"]["annotations"].update(
            {"container.apparmor.security.beta.kubernetes.io/c": "localhost/x"}
        ),
    ),
    ("privileged false", lambda p: ctx(p).update(privileged=False)),
]


@pytest.mark.parametrize(
    ("change", "expected"), [(c, e) for _, c, e in REFUSED], ids=[n for n, _, _ in REFUSED]
)
def test_refused(change: Callable[[Pod], None], expected: str) -> None:
    p = pod()
    change(p)
    (violation,) = baseline_violations(p)
    assert expected in violation


@pytest.mark.parametrize("change", [c for _, c in ALLOWED], ids=[n for n, _ in ALLOWED])
def test_allowed(change: Callable[[Pod], None]) -> None:
    p = pod()
    change(p)
    assert baseline_violations(p) == []


def test_workloads_are_judged_by_their_pod_template() -> None:
    bad = pod()
    spec(bad).update(hostNetwork=True)
    template = {"metadata": bad["metadata"], "spec": bad["spec"]}
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "spec": {"template": template}}
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "spec": {"jobTemplate": {"spec": {"template": copy.deepcopy(template)}}},
    }
    assert baseline_violations(daemonset) == ["host namespaces: spec.hostNetwork is true"]
    assert baseline_violations(cronjob) == ["host namespaces: spec.hostNetwork is true"]
    with pytest.raises(ValueError, match="makes no pods"):
        pod_of({"kind": "ConfigMap"})
