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
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
    return list(dict.fromkeys(found))  # the same command for two set-ups runs once


def side(command: str) -> str:
    """Which machine an install page command is for: the hub's or the one that builds."""
    return "hub" if "binder-service-hub" in command else "service"


def _env(path_first: Path | None = None, find_links: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.pop("PIP_NO_CACHE_DIR", None)  # the point is to reuse pip's cache
    # pip's byte-compiling of every installed module is most of an install's CPU and none of what these
    # tests look at (the modules import the same without it).
    env["PIP_NO_COMPILE"] = "1"
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
    out = subprocess.run(  # without the caller's PYTHONPATH, which may name the source folders
        [python, "-c", probe], env=_env(), capture_output=True, text=True, check=True, timeout=120
    )
    found: dict[str, bool] = json.loads(out.stdout)
    return found


GETTING_STARTED = ("getting-started.md", "## Running it yourself")
INSTALL_PAGE = ("install.md", "## Hub admin (one machine, no Kubernetes)")


def fresh_clone(dest: Path) -> Path:
    """What a fresh clone holds: the files git knows (no .venv, no build output)."""
    release.stage(ROOT, dest)
    return dest


def getting_started(clone: Path) -> Path:
    """getting-started.md's commands in the clone; the venv they made."""
    for command in commands(*GETTING_STARTED):
        run(command, clone, _env())
    return clone / ".venv"


def install_page(copy: Path, tmp: Path) -> dict[str, Path]:
    """install.md's commands, each in a new venv, against the copy's wheels (stamped as a release is)."""
    release.stamp(copy, release.Version.parse(VERSION))
    wheels = tmp / "wheels"
    projects = [str(copy / folder) for folder in release.PROJECTS.values()]
    run(
        shlex.join([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), *projects]),
        tmp,
        _env(),
    )

    def install(command: str) -> Path:
        venv = tmp / f"venv-{side(command)}"
        run(shlex.join([sys.executable, "-m", "venv", str(venv)]), tmp, _env())
        run(command, tmp, _env(path_first=venv / "bin", find_links=wheels))
        return venv

    found = install_commands(*INSTALL_PAGE)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(map(side, found), pool.map(install, found), strict=True))


@pytest.fixture(scope="module")
def installs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Future[Path], Future[dict[str, Path]]]]:
    """Both pages' installs, side by side from the start (each waits mostly on pip's downloads and
    unpacking): the getting-started venv, and the install page's venvs by name. The page's copy is stamped,
    so it is a clone of its own."""
    root = tmp_path_factory.mktemp("fresh-clone")
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield (
            pool.submit(lambda: getting_started(fresh_clone(root / "clone"))),
            pool.submit(lambda: install_page(fresh_clone(root / "stamped"), root)),
        )


def test_the_pages_still_give_commands_this_test_can_run() -> None:
    """Whatever the pages say is what runs; this only checks there is something of each kind to run."""
    started = commands(*GETTING_STARTED)
    assert started[0] == "python3 -m venv .venv", started
    assert any(c.startswith(".venv/bin/pip install ") for c in started), started
    page = install_commands(*INSTALL_PAGE)
    assert sorted(map(side, page)) == ["hub", "service"], page


def test_getting_started_installs_the_service_from_a_fresh_clone(
    installs: tuple[Future[Path], Future[dict[str, Path]]],
) -> None:
    venv = installs[0].result()
    help_ = subprocess.run([venv / "bin" / "binder-service", "--help"], capture_output=True, timeout=120)
    assert help_.returncode == 0, help_.stderr
    found = importable(venv / "bin" / "python", ("binder_service", "binder_service_client", *HUB_STACK))
    assert found == {"binder_service": True, "binder_service_client": True} | dict.fromkeys(HUB_STACK, False)


def test_install_page_commands_install_each_side_without_the_other(
    installs: tuple[Future[Path], Future[dict[str, Path]]],
) -> None:
    venvs = installs[1].result()
    for name, wants, never in (
        ("service", ("binder_service", "binder_service_client"), HUB_STACK),
        (
            "hub",
            ("binder_service_hub", "binder_service_client", "jupyterhub", "dockerspawner"),
            SERVICE_STACK,
        ),
    ):
        found = importable(venvs[name] / "bin" / "python", (*wants, *never))
        assert found == dict.fromkeys(wants, True) | dict.fromkeys(never, False), name
