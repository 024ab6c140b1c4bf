"""The install commands the docs give, run as written in fresh virtual environments on a clean copy.

docs/getting-started.md's "Running it yourself" (`python3 -m venv .venv`, `pip install -e '.[local]'`) runs
in the copy as a newcomer would; docs/install.md's hub admin commands (`pip install binder-service`,
`pip install "binder-service-hub[docker]"`) run against the three wheels built from the copy, stamped as a
release stamps them, found through `PIP_FIND_LINKS` (PyPI has none of them yet). Everything else comes from
PyPI through pip's cache, so a warm machine downloads nothing; each step is bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import release

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
STEP_TIMEOUT = 900  # one pip install of the service's stack from the cache takes about a minute here
VERSION = "0.0.1"
# What must never be importable next to each side.
HUB_STACK = ("binder_service_hub", "jupyterhub", "tornado")
SERVICE_STACK = ("binder_service", "fastapi", "starlette", "uvicorn")

pytestmark = pytest.mark.timeout(3 * STEP_TIMEOUT)


def commands(page: str, heading: str) -> list[str]:
    """The commands of the first console block under `heading` (`$ ` prompts dropped, comments kept out)."""
    text = (DOCS / page).read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    block = re.search(r"```console\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None, f"{page}: no console block under {heading!r}"
    lines = [line.removeprefix("$ ") for line in block.group(1).splitlines()]
    return [shlex.join(shlex.split(line, comments=True)) for line in lines if line.strip()]


def install_commands(page: str, heading: str) -> list[str]:
    """Every `pip install ...` of the console blocks in a section (up to the next heading)."""
    text = (DOCS / page).read_text()
    section = re.split(r"\n#+ ", text.split(f"\n{heading}\n", 1)[1], maxsplit=1)[0]
    found: list[str] = []
    for block in re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL):
        for line in block.splitlines():
            words = shlex.split(line.removeprefix("$ "), comments=True)
            if words[:2] == ["pip", "install"]:
                found.append(shlex.join(words))
    return found


def _env(path_first: Path | None = None, find_links: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.pop("PIP_NO_CACHE_DIR", None)  # the point is to reuse pip's cache
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    if find_links is not None:
        env["PIP_FIND_LINKS"] = f"{find_links} {env.get('PIP_FIND_LINKS', '')}".strip()
    return env


def run(command: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT
    )
    assert proc.returncode == 0, f"{command!r} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"


def importable(python: Path, modules: tuple[str, ...]) -> dict[str, bool]:
    probe = (
        f"import importlib.util as u, json; print(json.dumps({{m: bool(u.find_spec(m)) for m in {modules}}}))"
    )
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    found: dict[str, bool] = json.loads(out.stdout)
    return found


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a fresh clone holds: the files git knows (no .venv, no build output)."""
    dest = tmp_path_factory.mktemp("fresh-clone") / "binder-service"
    release.stage(ROOT, dest)
    return dest


def test_the_pages_still_give_the_commands_this_test_runs() -> None:
    assert commands("getting-started.md", "## Running it yourself") == [
        "python3 -m venv .venv",
        ".venv/bin/pip install -e '.[local]'",
    ]
    assert install_commands("install.md", "## Hub admin (one machine, no Kubernetes)") == [
        "pip install binder-service",
        "pip install 'binder-service-hub[docker]'",
    ]


def test_getting_started_installs_the_service_from_a_fresh_clone(clone: Path) -> None:
    for command in commands("getting-started.md", "## Running it yourself"):
        run(command, clone, _env())
    venv = clone / ".venv"
    help_ = subprocess.run([venv / "bin" / "binder-service", "--help"], capture_output=True, timeout=120)
    assert help_.returncode == 0, help_.stderr
    found = importable(venv / "bin" / "python", ("binder_service", "binder_service_client", *HUB_STACK))
    assert found == {"binder_service": True, "binder_service_client": True} | dict.fromkeys(HUB_STACK, False)


def test_install_page_commands_install_each_side_without_the_other(clone: Path, tmp_path: Path) -> None:
    release.stamp(clone, release.Version.parse(VERSION))
    wheels = tmp_path / "wheels"
    projects = [str(clone / folder) for folder in release.PROJECTS.values()]
    run(
        shlex.join([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), *projects]),
        clone,
        _env(),
    )
    service, hub = install_commands("install.md", "## Hub admin (one machine, no Kubernetes)")
    for command, wants, never in (
        (service, ("binder_service", "binder_service_client"), HUB_STACK),
        (hub, ("binder_service_hub", "binder_service_client", "jupyterhub", "dockerspawner"), SERVICE_STACK),
    ):
        venv = tmp_path / f"venv-{len(wants)}"
        run(shlex.join([sys.executable, "-m", "venv", str(venv)]), tmp_path, _env())
        run(command, tmp_path, _env(path_first=venv / "bin", find_links=wheels))
        found = importable(venv / "bin" / "python", (*wants, *never))
        assert found == dict.fromkeys(wants, True) | dict.fromkeys(never, False), command
