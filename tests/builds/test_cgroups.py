"""A cgroup of its own per local build (builds/cgroups.py): where it can be made, and, on this machine's
kernel, that a build's processes start in it, an out-of-memory kill is seen, and nothing is left."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_service.builds.cgroups import (
    LEAF,
    BuildCgroups,
    CgroupsUnavailable,
    Limits,
    _places,
    unavailable_reason,
)

MEMORY = Limits(memory=64 * 2**20)
BOTH = Limits(memory=64 * 2**20, cpus=1.5)


def _v1(tmp: Path, *, readonly: bool = False) -> tuple[str, str]:
    """mountinfo and /proc/self/cgroup of a v1 machine (as here): the service's memory cgroup nested."""
    for d in ("memory/system.slice/svc", "cpu"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    ro = "ro" if readonly else "rw"
    mountinfo = (
        f"30 25 0:27 / {tmp}/memory {ro},relatime shared:9 - cgroup cgroup rw,memory\n"
        f"31 25 0:28 / {tmp}/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu\n"
        f"32 25 0:29 / {tmp}/unified rw,relatime shared:11 - cgroup2 cgroup2 rw\n"
    )
    return mountinfo, "4:memory:/system.slice/svc\n1:cpu:/\n0::/\n"


def _v2(tmp: Path, controllers: str = "cpu memory pids") -> tuple[str, str]:
    """A v2 machine where the service's cgroup (a systemd unit with Delegate=yes) is its own."""
    own = tmp / "user.slice" / "svc.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(controllers + "\n")
    (own / "cgroup.procs").write_text("")
    (own / "cgroup.subtree_control").write_text("")
    return (
        f"40 25 0:30 / {tmp} rw,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        "0::/user.slice/svc.service\n",
    )


def test_v1_as_root_nests_the_builds_in_the_services_cgroup(tmp_path: Path) -> None:
    places = _places(BOTH, *_v1(tmp_path), euid=0)
    assert {c: (p.own, p.version) for c, p in places.items()} == {
        "memory": (tmp_path / "memory/system.slice/svc", 1),
        "cpu": (tmp_path / "cpu", 1),
    }
    cgroups = BuildCgroups(BOTH, "/var/lib/x", places)
    parents = cgroups.parents()
    assert [p.parent for p in parents] == [tmp_path / "memory/system.slice/svc", tmp_path / "cpu"]
    assert parents[0].name == parents[1].name
    assert parents[0].name.startswith("binder-service-")
    assert BuildCgroups(BOTH, "/var/lib/y", places).parents()[0] != parents[0]  # a service's own
    with pytest.raises(ValueError, match="not a build id"):
        cgroups.of("../x")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("v1, not root", r"cgroup v1 here, which delegates nothing to an unprivileged user \(uid 1000\)"),
        ("v1, read-only", r"the service's cgroup .*/memory/system.slice/svc is not writable \(uid 0\)"),
        ("v2, undelegated", r"not delegated to the service.s cgroup .*svc.service \(its cgroup.controllers:"),
        ("no hierarchy", r"no cgroup hierarchy here has the memory controller"),
    ],
)  # fmt: skip
def test_where_no_cgroup_can_be_made_the_reason_says_why(case: str, reason: str, tmp_path: Path) -> None:
    if case == "v1, not root":
        mountinfo, cgroup, euid = *_v1(tmp_path), 1000
    elif case == "v1, read-only":
        mountinfo, cgroup, euid = *_v1(tmp_path, readonly=True), 0
    elif case == "v2, undelegated":
        mountinfo, cgroup, euid = *_v2(tmp_path, "pids"), 1000
    else:
        mountinfo, cgroup, euid = "", "0::/\n", 0
    with pytest.raises(CgroupsUnavailable, match=reason):
        _places(MEMORY, mountinfo, cgroup, euid)


def test_v2_delegated_builds_get_memory_max_and_cpu_max(tmp_path: Path) -> None:
    places = _places(BOTH, *_v2(tmp_path), euid=os.geteuid())
    assert {p.version for p in places.values()} == {2}
    own = tmp_path / "user.slice" / "svc.service"
    cgroups = BuildCgroups(BOTH, "k", places)
    (parent,) = cgroups.parents()  # one hierarchy: one directory for both controllers
    cgroups.prepare()
    assert (own / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (parent / "cgroup.subtree_control").read_text() == "+cpu +memory"
    build = cgroups.create("b1")
    assert build.dirs == [parent / "b1"]
    assert (parent / "b1" / "memory.max").read_text() == str(64 * 2**20)
    assert (parent / "b1" / "cpu.max").read_text() == "150000 100000"
    (parent / "b1" / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert build.oom_kills() == 1
    assert build.enter(["repo2docker", "x"])[-2:] == ["repo2docker", "x"]
    assert str(parent / "b1" / "cgroup.procs") in build.enter([])
    # after `prepare` moved the service to its leaf, the next start finds the same place
    again = _places(BOTH, "40 25 0:30 / " + str(tmp_path) + " rw - cgroup2 cgroup2 rw\n",
                    f"0::/user.slice/svc.service/{LEAF}\n", euid=os.geteuid())  # fmt: skip
    assert BuildCgroups(BOTH, "k", again).parents() == [parent]


# --- this machine's kernel (root, cgroup v1 here) -------------------------------------------------------

here = pytest.mark.skipif(
    unavailable_reason(BOTH) is not None, reason=f"no build cgroup here: {unavailable_reason(BOTH)}"
)


@pytest.fixture
def cgroups() -> Iterator[BuildCgroups]:
    made = BuildCgroups.here(BOTH, f"test-{uuid.uuid4().hex}")
    made.prepare()
    yield made
    for parent in made.parents():
        for child in parent.iterdir():
            if child.is_dir():
                child.rmdir()
        parent.rmdir()


def _cgroup_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if controller in line.split(":")[1].split(","):
            return line.split(":", 2)[2]
    raise AssertionError(f"no {controller} line for {pid}")


@here
def test_a_build_starts_inside_and_its_children_stay_there(cgroups: BuildCgroups) -> None:
    build = cgroups.create("b" + uuid.uuid4().hex)
    proc = subprocess.Popen(build.enter(["sh", "-c", "sleep 60 & sleep 60"]), start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(build.pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = build.pids()
        assert proc.pid in pids  # the shell, which exec'd its command inside
        assert len(pids) == 3, pids  # ... and both sleeps
        for pid in pids:
            for controller, d in (("memory", build.dirs[0]), ("cpu", build.dirs[1])):
                assert d.as_posix().endswith(_cgroup_of(pid, controller)), (pid, controller)
        assert (build.dirs[0] / "memory.limit_in_bytes").read_text().strip() == str(64 * 2**20)
        assert (build.dirs[1] / "cpu.cfs_quota_us").read_text().strip() == "150000"
        build.end("b")  # what is left is killed, then the cgroup goes
        assert proc.wait(10) == -9
        assert not build.out_of_memory
        assert [d.exists() for d in build.dirs] == [False, False]
    finally:
        if proc.poll() is None:
            proc.kill()


@here
def test_an_out_of_memory_kill_is_seen(cgroups: BuildCgroups) -> None:
    build = cgroups.create("b" + uuid.uuid4().hex)
    code = subprocess.run(
        build.enter(["python3", "-c", "x = bytearray(200 * 2**20)"]), check=False
    ).returncode
    assert code == -9
    build.end("b")
    assert build.out_of_memory
    assert [d.exists() for d in build.dirs] == [False, False]


@here
def test_the_cgroups_of_dead_builds_are_swept(cgroups: BuildCgroups) -> None:
    dead, running = cgroups.create("dead1"), cgroups.create("running1")
    (dead.dirs[0] / "runc-step").mkdir()  # a RUN step's cgroup, left when its build was killed
    proc = subprocess.Popen(running.enter(["sleep", "60"]))
    try:
        while not running.pids():
            time.sleep(0.02)
        assert sorted(p.name for p in cgroups.sweep()) == ["dead1", "dead1"]  # memory and cpu
        assert [d.exists() for d in dead.dirs] == [False, False]
        assert [d.exists() for d in running.dirs] == [True, True]  # a build still running: adopted later
    finally:
        running.end("running1")
        proc.wait(10)
