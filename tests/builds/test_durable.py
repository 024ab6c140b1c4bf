"""Durable build processes: output in a file, exit status in a file, followed to the end even by a process
that did not start them (a restarted service)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from binder_service.builds import durable
from binder_service.builds.durable import BuildFiles, follow, is_build_process, spawn
from binder_service.builds.r2d_logs import MAX_LINE


def _files(tmp_path: Path, build_id: str = "b1") -> BuildFiles:
    files = BuildFiles.for_build(tmp_path, build_id)
    files.create()
    return files


async def test_output_and_exit_status_are_followed(tmp_path: Path) -> None:
    files = _files(tmp_path)
    script = "for i in 1 2 3; do echo line $i; sleep 0.05; done; printf 'no newline'; exit 3"
    proc = await spawn(["/bin/sh", "-c", script], files, env={"PATH": os.environ["PATH"]}, cwd=tmp_path)
    lines: list[str] = []
    code = await follow(files, lines.append, lambda: proc.returncode is None)
    assert lines == ["line 1", "line 2", "line 3", "no newline"]
    assert code == 3
    assert await proc.wait() == 3
    assert files.log.read_text() == "line 1\nline 2\nline 3\nno newline"
    assert oct(files.dir.stat().st_mode & 0o777) == "0o700"
    assert oct(files.log.stat().st_mode & 0o777) == "0o600"


async def test_a_killed_build_has_no_exit_status(tmp_path: Path) -> None:
    files = _files(tmp_path)
    proc = await spawn(["/bin/sh", "-c", "echo started; sleep 60"], files, env={}, cwd=tmp_path)
    lines: list[str] = []

    def feed(line: str) -> None:
        lines.append(line)
        os.killpg(proc.pid, signal.SIGKILL)  # stopped from outside, as `kill` would

    assert await follow(files, feed, lambda: proc.returncode is None) is None
    assert lines == ["started"]


async def test_a_build_started_by_a_process_that_died_is_followed_by_another(tmp_path: Path) -> None:
    files = _files(tmp_path, "orphan")
    # A first "service" starts the build and exits at once (as if killed): the build is reparented.
    starter = (
        "import asyncio, os, sys\n"
        "from pathlib import Path\n"
        "from binder_service.builds.durable import BuildFiles, spawn\n"
        "async def main():\n"
        "    p = await spawn(['/bin/sh', '-c', 'sleep 0.3; echo one; sleep 0.3; echo two; exit 0'],\n"
        "                    BuildFiles(Path(sys.argv[1])), env={}, cwd=Path(sys.argv[1]))\n"
        "    print(p.pid, flush=True)\n"
        "    os._exit(0)  # as a crash would: no clean-up (asyncio would kill its children)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", starter, str(files.dir)], check=True, capture_output=True, text=True
    )
    pid = int(out.stdout)
    assert is_build_process(pid, files)
    assert not is_build_process(os.getpid(), files)  # a pid that is someone else's is not adopted
    lines: list[str] = []
    assert await follow(files, lines.append, lambda: is_build_process(pid, files)) == 0
    assert lines == ["one", "two"]
    assert not is_build_process(pid, files)


def test_build_ids_become_no_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a build id"):
        BuildFiles.for_build(tmp_path, "../etc")


async def test_the_log_and_the_exit_status_are_looked_at_off_the_event_loop(tmp_path: Path) -> None:
    # `alive` is asked with the exit file, in the thread that reads the log: a poll never blocks the loop.
    files = _files(tmp_path)
    proc = await spawn(["/bin/sh", "-c", "sleep 0.2; echo done"], files, env={}, cwd=tmp_path)
    asked_in: set[str] = set()

    def alive() -> bool:
        asked_in.add(threading.current_thread().name)
        return proc.returncode is None

    lines: list[str] = []
    assert await follow(files, lines.append, alive) == 0
    assert lines == ["done"]
    assert asked_in
    assert threading.main_thread().name not in asked_in


async def test_long_lines_are_cut_as_a_pipes_are(tmp_path: Path) -> None:
    # One line splitter for pipes and log files (r2d_logs.read_lines): a huge line is cut at MAX_LINE.
    files = _files(tmp_path)
    script = f"head -c {MAX_LINE * 2 + 10} /dev/zero | tr '\\0' x; echo; echo short"
    proc = await spawn(["/bin/sh", "-c", script], files, env={"PATH": os.environ["PATH"]}, cwd=tmp_path)
    lines: list[str] = []
    assert await follow(files, lines.append, lambda: proc.returncode is None) == 0
    assert lines[-1] == "short"
    assert all(len(line) <= MAX_LINE for line in lines)
    assert lines[0] == "x" * MAX_LINE


async def test_the_end_of_our_own_build_is_seen_at_its_exit_not_at_the_next_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Looks an hour apart: only the process's exit can end the wait (issue 16: last line -> `ready`).
    monkeypatch.setattr(durable, "POLL", 3600.0)
    files = _files(tmp_path)
    script = "sleep 0.2; echo one; sleep 0.2; echo two; exit 4"
    proc = await spawn(["/bin/sh", "-c", script], files, env={"PATH": os.environ["PATH"]}, cwd=tmp_path)
    lines: list[str] = []
    async with asyncio.timeout(120):  # a guard against a hang, not a speed requirement
        code = await follow(files, lines.append, lambda: proc.returncode is None, proc.wait())
    assert (lines, code) == (["one", "two"], 4)
    assert await proc.wait() == 4
