"""A build pod's container as an OCI runtime bundle, the way a kubelet with containerd's CRI plugin makes
one, so `runc` can run exactly what the pod spec grants without a cluster:

- process: the image's entrypoint + the container's `args` (no `command`), the image's env then the
  container's (plain values; secretKeyRef is not resolved here), `runAsUser`/`runAsGroup`, `fsGroup` as a
  supplementary group; capabilities: every one dropped (`drop: [ALL]`) but the `add` list, in the bounding,
  permitted and effective sets; `noNewPrivileges` = not `allowPrivilegeEscalation`;
- seccomp: a `Localhost` profile (docker/containers-common JSON) converted as containerd converts it: rules
  kept for this architecture and the container's capabilities (`includes`/`excludes`);
- mounts: containerd's defaults (proc, a tmpfs /dev with only runc's default devices, devpts, shm, mqueue,
  a read-only sysfs and cgroup), the masked and read-only /proc and /sys paths, and the pod's volumes
  (emptyDir and Secret) as bind mounts of directories the caller made (a `subPath` made in its volume as
  the kubelet makes it: the volume's mode and owners);
- the root filesystem read-only when `readOnlyRootFilesystem` says so;
- memory and CPU limits as the container's cgroup limits.

One deliberate difference: no network namespace (the pod's own is not what is checked here), so the build
reaches the test's registry and git server on loopback.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

# containerd's defaults (oci/spec.go populateDefaultUnixSpec; CRI's masked and read-only paths).
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
]
_ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
_GO_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}  # what a profile's includes/excludes.arches name
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity(value: str) -> int:
    """A Kubernetes quantity in bytes (`4Gi`, `500M`)."""
    m = re.fullmatch(r"([0-9.]+)([KMGT]i|[kMGT])?", str(value))
    assert m, value
    return int(float(m[1]) * _UNITS.get(m[2] or "", 1))


def seccomp(profile: dict[str, Any], caps: set[str]) -> dict[str, Any]:
    """A docker/containers-common seccomp profile as OCI `linux.seccomp`, for this machine's architecture
    and the capabilities `caps` (`CAP_`-prefixed), as containerd's `seccomp.Setup` does."""
    arch, go_arch = _ARCHES[platform.machine()], _GO_ARCHES[platform.machine()]
    arches = [arch]
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == arch:
            arches += entry.get("subArchitectures") or []
    syscalls = []
    for rule in profile["syscalls"]:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("arches") and go_arch not in inc["arches"]:
            continue
        if exc.get("arches") and go_arch in exc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            continue
        if exc.get("caps") and set(exc["caps"]) & caps:
            continue
        out: dict[str, Any] = {"names": rule["names"], "action": rule["action"]}
        if rule.get("args"):
            out["args"] = rule["args"]
        if "errnoRet" in rule:
            out["errnoRet"] = rule["errnoRet"]
        syscalls.append(out)
    spec: dict[str, Any] = {
        "defaultAction": profile["defaultAction"],
        "architectures": arches,
        "syscalls": syscalls,
    }
    if "defaultErrnoRet" in profile:
        spec["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return spec


def runtime_config(
    pod: dict[str, Any],
    image_config: dict[str, Any],
    *,
    rootfs: Path,
    volumes: dict[str, Path],
    seccomp_root: Path,
) -> dict[str, Any]:
    """The OCI config.json for the pod's only container. `image_config` is the image's `Config` (docker
    inspect); `volumes` maps each volume name to the host directory standing in for it."""
    (container,) = pod["spec"]["containers"]
    sc = container.get("securityContext") or {}
    pod_sc = pod["spec"].get("securityContext") or {}
    assert not sc.get("privileged"), "a privileged container is not what this checks"
    caps_wanted = sorted(f"CAP_{c}" for c in (sc.get("capabilities") or {}).get("add") or [])
    assert (sc.get("capabilities") or {}).get("drop") == ["ALL"], "only drop: [ALL] is translated"
    image_user = str(image_config.get("User") or "0:0").split(":")
    uid = int(sc.get("runAsUser", pod_sc.get("runAsUser", image_user[0])))
    gid = int(sc.get("runAsGroup", pod_sc.get("runAsGroup", image_user[1] if len(image_user) > 1 else 0)))
    groups = [int(pod_sc["fsGroup"])] if "fsGroup" in pod_sc else []
    env = dict(e.split("=", 1) for e in image_config.get("Env") or [])
    for item in container.get("env") or []:
        assert "value" in item, f"{item['name']}: only plain values are translated"
        env[item["name"]] = str(item["value"])
    mounts = [dict(m) for m in DEFAULT_MOUNTS]
    for m in container.get("volumeMounts") or []:
        options = ["rbind", "ro" if m.get("readOnly") else "rw", "nosuid", "nodev"]
        source = volumes[m["name"]]
        if m.get("subPath"):
            source = _sub_path(source, m["subPath"])
        mounts.append(
            {"destination": m["mountPath"], "type": "bind", "source": str(source), "options": options}
        )
    linux: dict[str, Any] = {
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
    }
    profile = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
    if profile.get("type") == "Localhost":
        data = json.loads((seccomp_root / profile["localhostProfile"]).read_text())
        linux["seccomp"] = seccomp(data, set(caps_wanted))
    else:
        assert not profile, f"seccomp {profile} is not translated here"
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        linux["resources"]["memory"] = {"limit": quantity(limits["memory"])}
    if "cpu" in limits:
        linux["resources"]["cpu"] = {"quota": int(float(limits["cpu"]) * 100000), "period": 100000}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": groups},
            "args": [*(image_config.get("Entrypoint") or []), *container["args"]],
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": image_config.get("WorkingDir") or "/",
            "capabilities": {
                "bounding": caps_wanted,
                "effective": caps_wanted,
                "permitted": caps_wanted,
                "inheritable": [],
                "ambient": [],
            },
            "noNewPrivileges": not sc.get("allowPrivilegeEscalation", True),
        },
        "root": {"path": str(rootfs), "readonly": bool(sc.get("readOnlyRootFilesystem"))},
        "hostname": pod["metadata"]["name"][:63],
        "mounts": mounts,
        "linux": linux,
    }


def _sub_path(volume: Path, sub: str) -> Path:
    """A volume's `subPath`, made as a kubelet makes it when missing: the volume's mode and owners."""
    assert not Path(sub).is_absolute(), sub
    assert ".." not in Path(sub).parts, sub
    path = volume / sub
    if not path.exists():
        st = volume.stat()
        path.mkdir(parents=True)
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, st.st_mode & 0o7777)
    return path


def prepare_bundle(
    pod: dict[str, Any],
    image_config: dict[str, Any],
    *,
    rootfs: Path,
    dest: Path,
    seccomp_root: Path,
    secrets: dict[str, dict[str, str]],
) -> Path:
    """A bundle directory in `dest` for the pod's container, with its volumes made as a kubelet makes them:
    an emptyDir writable by the pod's fsGroup (setgid), a Secret's items as files of its `defaultMode`,
    group fsGroup. `secrets`: Secret name -> data."""
    group = (pod["spec"].get("securityContext") or {}).get("fsGroup", 0)
    volumes: dict[str, Path] = {}
    for v in pod["spec"].get("volumes") or []:
        path = dest / "volumes" / v["name"]
        path.mkdir(parents=True)
        if "emptyDir" in v:
            os.chown(path, 0, group)
            os.chmod(path, 0o2777)
        elif "secret" in v:
            data = secrets[v["secret"]["secretName"]]
            for item in v["secret"].get("items") or [{"key": k, "path": k} for k in data]:
                file = path / item["path"]
                file.write_text(data[item["key"]])
                os.chown(file, 0, group)
                os.chmod(file, v["secret"].get("defaultMode", 0o644))
        else:
            raise AssertionError(f"volume {v['name']}: only emptyDir and Secret volumes are made here")
        volumes[v["name"]] = path
    bundle = dest / "bundle"
    bundle.mkdir()
    config = runtime_config(pod, image_config, rootfs=rootfs, volumes=volumes, seccomp_root=seccomp_root)
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle
