"""A cgroup of its own for each local build: repo2docker, buildah and everything they start (every RUN
step) under the build's memory and CPU limits together.

Where the cgroups live: under the service's own cgroup, in `binder-service-<key>/<build id>` (the key is
the service's state directory's: one service's builds, found again by the next start of that service).
Nested, not beside it, so whatever limits the service has (a systemd unit's `MemoryMax=`) hold its
builds too.

- cgroup v1 (here): the `memory` and `cpu` hierarchies, as root only (v1 delegates nothing to an
  unprivileged user). Memory: `memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` (swap included)
  where swap is accounted. CPU: `cpu.cfs_quota_us` of `cpu.cfs_period_us`.
- cgroup v2: as root, or in a delegated subtree (the service's own cgroup is its user's: systemd
  `Delegate=yes`). The service's own processes move to a leaf (`binder-service-leaf`): v2 enables
  controllers for children only of a cgroup without processes. Memory: `memory.max`, `memory.swap.max =
  0`. CPU: `cpu.max`.

A build enters its cgroup before it runs anything: its first process (a shell) writes its own pid into
`cgroup.procs` and only then execs repo2docker, so every process of the build starts inside. When the
build ends, however it ends, whatever is left in the cgroup is killed and the cgroup removed; an
out-of-memory kill is read from the cgroup first (`oom_kill` in `memory.oom_control` / `memory.events`).
At start, the cgroups of builds that died with an earlier service are removed (those without a process;
a build still running is adopted, and its cgroup removed when it ends).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["BuildCgroup", "BuildCgroups", "CgroupsUnavailable", "Limits", "unavailable_reason"]

CPU_PERIOD = 100_000  # microseconds
KILL_WAIT = 10.0  # seconds for a build's last processes to die after SIGKILL
LEAF = "binder-service-leaf"  # v2: where the service's own processes go
ENTER_FAILED = 125  # the exit status of a build that could not enter its cgroup
_FIX = (
    "run the service as root (BINDER_SERVICE_BUILD_USER builds rootless then), or on cgroup v2 in a "
    "delegated cgroup (systemd: Delegate=yes)"
)
# $1: how many cgroup.procs files follow; then the files; then the command, exec'd once inside.
_ENTER = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || '
    f'{{ echo "Error: binder-service: cannot enter the build\'s cgroup ($1)"; exit {ENTER_FAILED}; }}; '
    'shift; n=$((n - 1)); done; exec "$@"'
)


class CgroupsUnavailable(ValueError):
    """No cgroup can be made for builds here; the message says why and what would allow it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """A build's limits: bytes of memory (swap included), CPUs."""

    memory: int | None = None
    cpus: float = 0.0

    def controllers(self) -> list[str]:
        return [c for c, wanted in (("memory", self.memory), ("cpu", self.cpus)) if wanted]


@dataclass(frozen=True, slots=True)
class _Place:
    """Where one controller's build cgroups go: the service's cgroup in its hierarchy."""

    own: Path
    version: int
    writable: bool


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str], bool]]:
    """(fstype, root, mount point, super options, read-only) of every cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if "-" not in fields:
            continue
        dash = fields.index("-")
        fstype, options = fields[dash + 1], set(fields[dash + 3].split(","))
        if fstype in ("cgroup", "cgroup2"):
            point = fields[4].encode().decode("unicode_escape")
            readonly = "ro" in fields[5].split(",") or "ro" in options
            found.append((fstype, fields[3], point, options, readonly))
    return found


def _beneath(point: str, root: str, own: str) -> Path | None:
    """`own` (a path in the hierarchy) in the file system, through a mount of `root` at `point`."""
    if own != root and not own.startswith(root.rstrip("/") + "/"):
        return None
    return Path(point) / os.path.relpath(own, root)


def _own_paths(cgroup: str) -> tuple[dict[str, str], str | None]:
    """The process's cgroup per v1 controller, and in the v2 hierarchy (from /proc/self/cgroup)."""
    v1: dict[str, str] = {}
    v2 = None
    for line in cgroup.splitlines():
        number, names, path = line.split(":", 2)
        if number == "0" and not names:
            v2 = path
        v1 |= {name: path for name in names.split(",") if name}
    return v1, v2


def _places(limits: Limits, mountinfo: str, cgroup: str, euid: int) -> dict[str, _Place]:
    """Where each controller `limits` needs is, or CgroupsUnavailable saying why no cgroup can be made."""
    own_v1, own_v2 = _own_paths(cgroup)
    mounts = _mounts(mountinfo)
    places: dict[str, _Place] = {}
    for controller in limits.controllers():
        v1 = [
            (own, ro)
            for fstype, root, point, options, ro in mounts
            if fstype == "cgroup" and controller in options and controller in own_v1
            if (own := _beneath(point, root, own_v1[controller])) is not None
        ]
        v2 = [
            (own, ro)
            for fstype, root, point, _, ro in mounts
            if fstype == "cgroup2" and own_v2 is not None
            if (own := _beneath(point, root, own_v2)) is not None
        ]
        if v1:
            place = _v1_place(controller, *v1[0], euid)
        elif v2:
            place = _v2_place(controller, *v2[0])
        else:
            raise CgroupsUnavailable(f"no cgroup hierarchy here has the {controller} controller: {_FIX}")
        if not place.writable:
            raise CgroupsUnavailable(
                f"the service's cgroup {place.own} is not writable (uid {euid}), so no cgroup can be "
                f"made for a build there: {_FIX}"
            )
        places[controller] = place
    return places


def _v1_place(controller: str, own: Path, readonly: bool, euid: int) -> _Place:
    if euid != 0:
        raise CgroupsUnavailable(
            f"the {controller} controller is on cgroup v1 here, which delegates nothing to an "
            f"unprivileged user (uid {euid}): {_FIX}"
        )
    return _Place(own, 1, not readonly and os.access(own, os.W_OK))


def _v2_place(controller: str, own: Path, readonly: bool) -> _Place:
    base = own.parent if own.name == LEAF else own  # moved there by an earlier `prepare`
    available = _read(base / "cgroup.controllers").split()
    if controller not in available:
        raise CgroupsUnavailable(
            f"the {controller} controller is not delegated to the service's cgroup {base} "
            f"(its cgroup.controllers: {' '.join(available) or 'none'}): {_FIX}"
        )
    files = (base, base / "cgroup.procs", base / "cgroup.subtree_control")
    return _Place(base, 2, not readonly and all(os.access(f, os.W_OK) for f in files))


def unavailable_reason(limits: Limits) -> str | None:
    """Why no build cgroup with `limits` can be made here, or None when one can (a look, nothing made)."""
    try:
        _places(limits, _read(Path("/proc/self/mountinfo")), _read(Path("/proc/self/cgroup")), os.geteuid())
    except CgroupsUnavailable as e:
        return str(e)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class BuildCgroups:
    """The cgroups of one service's builds (made with `prepare`, at start)."""

    def __init__(self, limits: Limits, key: str, places: dict[str, _Place]) -> None:
        self.limits = limits
        self._name = f"binder-service-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        self._places = places

    @classmethod
    def here(cls, limits: Limits, key: str) -> BuildCgroups:
        """This machine's, for this process; CgroupsUnavailable when none can be made."""
        mountinfo, cgroup = _read(Path("/proc/self/mountinfo")), _read(Path("/proc/self/cgroup"))
        return cls(limits, key, _places(limits, mountinfo, cgroup, os.geteuid()))

    def parents(self) -> list[Path]:
        """The directories holding the builds' cgroups, one per hierarchy."""
        return list(dict.fromkeys(place.own / self._name for place in self._places.values()))

    def prepare(self) -> None:
        """Make the parents (v2: with the controllers enabled for the builds' cgroups)."""
        v2 = sorted(c for c, p in self._places.items() if p.version == 2)
        for parent in self.parents():
            if v2:
                _enable(parent.parent, v2)
            parent.mkdir(exist_ok=True)
            if v2:
                _enable(parent, v2)

    def sweep(self) -> list[Path]:
        """Remove the cgroups of builds nothing runs in any more (an earlier service's); returns them."""
        removed: list[Path] = []
        for parent in self.parents():
            for child in sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []:
                if not _pids(child) and _rmdir_tree(child):
                    removed.append(child)
        if removed:
            log.info(
                "removed the cgroups of builds that ended with an earlier service",
                extra={"count": len(removed)},
            )
        return removed

    def close(self) -> None:
        """Remove the parents when no build's cgroup is left in them (a build left running for adoption
        keeps its parent)."""
        for parent in self.parents():
            with contextlib.suppress(OSError):
                parent.rmdir()

    def of(self, build_id: str) -> BuildCgroup:
        """Build `build_id`'s cgroup (made by `create`, or by an earlier service for an adopted build)."""
        if not build_id.isalnum():
            raise ValueError(f"not a build id: {build_id[:64]!r}")
        dirs = {c: p.own / self._name / build_id for c, p in self._places.items()}
        return BuildCgroup(dirs, {c: p.version for c, p in self._places.items()}, self.limits)

    def create(self, build_id: str) -> BuildCgroup:
        """A new cgroup for build `build_id`, with the limits set."""
        cgroup = self.of(build_id)
        cgroup.make()
        return cgroup


def _enable(cgroup: Path, controllers: list[str]) -> None:
    """Enable `controllers` for `cgroup`'s children. v2 allows that only in a cgroup without processes
    (the root aside): when refused (EBUSY), the processes in it (the service's own) move to a leaf first."""
    wanted = " ".join(f"+{c}" for c in controllers)
    try:
        _write(cgroup / "cgroup.subtree_control", wanted)
        return
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
    leaf = cgroup / LEAF
    leaf.mkdir(exist_ok=True)
    for pid in _read(cgroup / "cgroup.procs").split():
        with contextlib.suppress(ProcessLookupError):
            _write(leaf / "cgroup.procs", pid)
    _write(cgroup / "cgroup.subtree_control", wanted)


class BuildCgroup:
    """One build's cgroup: a directory per hierarchy (one on v2)."""

    def __init__(self, dirs: dict[str, Path], versions: dict[str, int], limits: Limits) -> None:
        self._dirs = dirs
        self._versions = versions
        self.limits = limits
        self.out_of_memory = False  # set by `end`: the kernel killed a process of it at the limit

    @property
    def dirs(self) -> list[Path]:
        return list(dict.fromkeys(self._dirs.values()))

    def make(self) -> None:
        for d in self.dirs:
            d.mkdir()
        if self.limits.memory is not None:
            d, memory = self._dirs["memory"], str(self.limits.memory)
            if self._versions["memory"] == 1:
                _write(d / "memory.limit_in_bytes", memory)
                if (d / "memory.memsw.limit_in_bytes").exists():  # swap accounted: no swapping past it
                    _write(d / "memory.memsw.limit_in_bytes", memory)
            else:
                _write(d / "memory.max", memory)
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
        if self.limits.cpus:
            d, quota = self._dirs["cpu"], max(1000, round(self.limits.cpus * CPU_PERIOD))
            if self._versions["cpu"] == 1:
                _write(d / "cpu.cfs_period_us", str(CPU_PERIOD))
                _write(d / "cpu.cfs_quota_us", str(quota))
            else:
                _write(d / "cpu.max", f"{quota} {CPU_PERIOD}")

    def enter(self, argv: list[str]) -> list[str]:
        """`argv`, run inside this cgroup from its first instruction (a shell enters, then execs it)."""
        procs = [str(d / "cgroup.procs") for d in self.dirs]
        return ["/bin/sh", "-c", _ENTER, "binder-service-cgroup", str(len(procs)), *procs, *argv]

    def oom_kills(self) -> int:
        """How often the kernel killed a process of the build at its memory limit."""
        d = self._dirs.get("memory")
        if d is None:
            return 0
        name = "memory.oom_control" if self._versions["memory"] == 1 else "memory.events"
        for line in _read(d / name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def peak_memory(self) -> int | None:
        """The most memory the build used at once (bytes), where the kernel says."""
        d = self._dirs.get("memory")
        if d is None:
            return None
        name = "memory.max_usage_in_bytes" if self._versions["memory"] == 1 else "memory.peak"
        text = _read(d / name).strip()
        return int(text) if text.isdigit() else None

    def pids(self) -> list[int]:
        """Every process in the cgroup and the cgroups below it (RUN steps under runc)."""
        return sorted({pid for d in self.dirs for pid in _pids(d)})

    def end(self, build_id: str) -> None:
        """The build is over: note an out-of-memory kill, then `remove`."""
        kills, peak = self.oom_kills(), self.peak_memory()
        self.out_of_memory = kills > 0
        self.remove()
        log.info(
            "build cgroup removed",
            extra={"build_id": build_id, "peak_memory": peak, "oom_kills": kills},
        )

    def remove(self) -> None:
        """Kill whatever of the build is left, then remove the cgroup (and those below it)."""
        deadline = time.monotonic() + KILL_WAIT
        while (left := self.pids()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for d in self.dirs:
            if not _rmdir_tree(d):
                log.warning("could not remove a build's cgroup", extra={"cgroup": str(d)})


def _walk(top: Path) -> Iterator[Path]:
    """`top` and the directories below it, deepest first."""
    for parent, dirs, _ in os.walk(top, topdown=False):
        for name in dirs:
            yield Path(parent) / name
    yield top


def _pids(top: Path) -> list[int]:
    return [int(p) for d in _walk(top) if d.is_dir() for p in _read(d / "cgroup.procs").split()]


def _rmdir_tree(top: Path) -> bool:
    """Remove the empty cgroup `top` and those below it; False when one is busy (or already gone: True)."""
    for d in _walk(top):
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True
