"""tests/support/service.py's `running_service`: what it makes for a service goes with the service."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from binder_service.settings import Settings
from tests.support.service import running_service


def test_the_state_directory_it_made_goes_when_the_service_stops(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes it, for this test
    with running_service(make_settings(registry_url="")) as url:
        assert httpx.get(f"{url}health", timeout=30).status_code == 200
        made = list(tmp_path.glob("bs-state-*"))
        assert len(made) == 1
        assert (made[0] / "binder-service.sqlite").exists()
    assert not made[0].exists()


def test_a_state_directory_it_was_given_stays(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_service(make_settings(registry_url="", state_dir=state)) as url:
        assert httpx.get(f"{url}health", timeout=30).status_code == 200
    assert (state / "binder-service.sqlite").exists()
