"""The Pod Security Standards' `baseline` profile, as Kubernetes' Pod Security admission checks it
(https://kubernetes.io/docs/concepts/security/pod-security-standards/, the rules of the newest version):
what a namespace labelled `pod-security.kubernetes.io/enforce: baseline` would refuse about a pod, or about
the pod template of a workload (Deployment, DaemonSet, StatefulSet, ReplicaSet, Job, CronJob).

`baseline_violations(obj)` lists each refused field, one line each, empty when the pod is admitted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Capabilities a baseline pod may add (beyond the runtime's default set).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
# Seccomp as annotations (before the securityContext field): still checked by Pod Security admission.
SECCOMP_ANNOTATIONS = (
    "seccomp.security.alpha.kubernetes.io/pod",
    "container.seccomp.security.alpha.kubernetes.io/",
)


def pod_of(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, spec) of the pod `obj` is or makes."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj.get("metadata") or {}, obj.get("spec") or {}
    if kind == "CronJob":
        template = obj["spec"]["jobTemplate"]["spec"]["template"]
    elif kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "ReplicationController"):
        template = obj["spec"]["template"]
    else:
        raise ValueError(f"{kind} makes no pods")
    return template.get("metadata") or {}, template.get("spec") or {}


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield f"{key}[{c.get('name')}]", c


def _security_contexts(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "spec.securityContext", spec.get("securityContext") or {}
    for where, c in _containers(spec):
        yield f"{where}.securityContext", c.get("securityContext") or {}


def baseline_violations(obj: dict[str, Any]) -> list[str]:
    meta, spec = pod_of(obj)
    found: list[str] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"host namespaces: spec.{field} is true")
    for v in spec.get("volumes") or []:
        if "hostPath" in v:
            found.append(
                f"hostPath volumes: volume {v.get('name')} is a hostPath ({v['hostPath'].get('path')})"
            )
    for where, c in _containers(spec):
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"host ports: {where} uses hostPort {port['hostPort']}")
    for where, sc in _security_contexts(spec):
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"HostProcess: {where}.windowsOptions.hostProcess is true")
        if sc.get("privileged"):
            found.append(f"privileged: {where}.privileged is true")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if extra := sorted(added - BASELINE_CAPABILITIES):
            found.append(f"capabilities: {where} adds {', '.join(extra)}")
        if sc.get("procMount") not in (None, "Default"):
            found.append(f"/proc mount: {where}.procMount is {sc['procMount']}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"seccomp: {where}.seccompProfile is Unconfined")
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"AppArmor: {where}.appArmorProfile is {apparmor}")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            found.append(f"SELinux: {where}.seLinuxOptions.type is {selinux['type']}")
        for field in ("user", "role"):
            if selinux.get(field):
                found.append(f"SELinux: {where}.seLinuxOptions.{field} is set")
    for name, value in (meta.get("annotations") or {}).items():
        confined = value == "runtime/default" or value.startswith("localhost/")
        if name.startswith(APPARMOR_ANNOTATION) and not confined:
            found.append(f"AppArmor: annotation {name} is {value}")
        if name.startswith(SECCOMP_ANNOTATIONS) and value == "unconfined":
            found.append(f"seccomp: annotation {name} is unconfined")
    for sysctl in (spec.get("securityContext") or {}).get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"sysctls: {sysctl.get('name')} is not a safe sysctl")
    return found
