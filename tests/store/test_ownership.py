"""One owner per build store: the kernel's lock, who holds it, and that it dies with its holder."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from binder_service.store.ownership import LOCK_NAME, StoreHeld, claim, holder, is_free, lock_files
from tests.support.waiting import wait_until

_HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from binder_service.store.ownership import claim
    claim((Path(sys.argv[1]),), address="http://127.0.0.1:9999/")
    print("held", flush=True)
    time.sleep(600)
    """
)


def _holding(lock: Path) -> subprocess.Popen[str]:
    """Another process that owns `lock` until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock)], stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holder_and_the_fix(tmp_path: Path) -> None:
    lock = tmp_path / "state" / LOCK_NAME
    other = _holding(lock)
    try:
        with pytest.raises(StoreHeld) as refused:
            claim((lock,), address="http://127.0.0.1:1/")
        message = str(refused.value)
        assert f"pid {other.pid}" in message
        assert "http://127.0.0.1:9999/" in message
        assert "BINDER_SERVICE_STATE_DIR" in message
        assert holder(lock)["pid"] == other.pid  # the refused claim wrote nothing over it
    finally:
        other.kill()
        other.wait()


def test_the_lock_dies_with_its_holder_even_a_sigkilled_one(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_NAME
    other = _holding(lock)
    assert not is_free(lock)
    other.send_signal(signal.SIGKILL)
    other.wait()
    wait_until(lambda: is_free(lock), timeout=30, what="the kernel to drop the dead holder's lock")
    owned = claim((lock,), address="http://127.0.0.1:2/")  # no hand needed to clear it
    try:
        assert holder(lock)["address"] == "http://127.0.0.1:2/"
    finally:
        owned.release()
    assert is_free(lock)


def test_one_process_claims_again_and_releases_with_the_last_claim(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_NAME
    first = claim((lock,), address="http://127.0.0.1:3/")  # `serve`, before it binds
    second = claim((lock,), address="http://127.0.0.1:3/")  # the app's lifespan
    second.release()
    assert not is_free(lock)
    first.release()
    assert is_free(lock)


def test_all_or_nothing(tmp_path: Path) -> None:
    free, held = tmp_path / "a" / LOCK_NAME, tmp_path / "b.sqlite.lock"
    other = _holding(held)
    try:
        with pytest.raises(StoreHeld):
            claim((free, held), address="http://127.0.0.1:4/")
        assert is_free(free)  # the first lock was given back
    finally:
        other.kill()
        other.wait()


def test_builds_left_running_do_not_hold_the_store(tmp_path: Path) -> None:
    """A child process (a build that outlives the service) does not inherit the lock."""
    lock = tmp_path / LOCK_NAME
    owned = claim((lock,), address="http://127.0.0.1:5/")
    child = subprocess.Popen(["sleep", "600"], close_fds=False)
    try:
        owned.release()
        assert is_free(lock)
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("db_url", "expected"),
    [
        (
            "sqlite:///{state}/binder-service.sqlite",
            ["{state}/binder-service.lock", "{state}/binder-service.sqlite.lock"],
        ),
        ("sqlite:///{tmp}/shared.db", ["{state}/binder-service.lock", "{tmp}/shared.db.lock"]),
        ("postgresql+asyncpg://u:pw@127.0.0.1/db", ["{state}/binder-service.lock"]),
        ("sqlite:///:memory:", ["{state}/binder-service.lock"]),
    ],
)
def test_what_is_locked(tmp_path: Path, db_url: str, expected: list[str]) -> None:
    state = tmp_path / "state"
    names = {"state": str(state), "tmp": str(tmp_path)}
    got = lock_files(state, db_url.format(**names))
    assert [str(p) for p in got] == [e.format(**names) for e in expected]
