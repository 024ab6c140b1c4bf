"""Workdirs whose service and builds all died are removed by the next executor; held ones never are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from binder_service.builds.workdirs import PREFIX, sweep_abandoned
from tests.support.waiting import wait_until

OWNER = """
import subprocess, sys, time
from pathlib import Path
from binder_service.builds.workdirs import Workdir
w = Workdir(Path(sys.argv[1]))
(w.path / "build-x").mkdir()
(w.path / "build-x" / "git-credentials").write_text("https://u:secret@h\\n")
child = subprocess.Popen(["sleep", "600"], pass_fds=(w.fd,)) if sys.argv[2] == "build" else None
print(w.path, child.pid if child else 0, flush=True)
time.sleep(600)
"""


def _owner(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], Path, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path), mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    path, child = proc.stdout.readline().split()
    return proc, Path(path), int(child)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def test_a_workdir_is_removed_once_its_service_is_killed(tmp_path: Path) -> None:
    proc, path, _ = _owner(tmp_path, "alone")
    assert sweep_abandoned(tmp_path) == []  # held by a live service
    assert path.is_dir()
    _kill(proc)  # no exit handler runs
    assert path.is_dir()
    assert sweep_abandoned(tmp_path) == [path]
    assert not path.exists()


def test_a_build_still_running_keeps_its_dead_services_workdir(tmp_path: Path) -> None:
    proc, path, build = _owner(tmp_path, "build")
    _kill(proc)
    assert sweep_abandoned(tmp_path) == []  # the build (adopted by a restarted service) still needs it
    assert (path / "build-x" / "git-credentials").exists()
    os.kill(build, signal.SIGKILL)  # its lock goes with its last file descriptor
    assert wait_until(lambda: sweep_abandoned(tmp_path), what="the sweep") == [path]
    assert not path.exists()


def test_directories_without_a_lock_are_left_alone(tmp_path: Path) -> None:
    other = tmp_path / f"{PREFIX}someone-else"
    other.mkdir()
    assert sweep_abandoned(tmp_path) == []
    assert other.is_dir()
