"""A virtualenv any user can run binder-service from: Debian's /usr/bin/python3 (the tests' own Python lives
under /root, mode 0700, out of an unprivileged user's reach) with this tree installed editable, so it runs
the tree's code as it is now. Kept in `.cache/` across runs, keyed on what it installs (the projects'
pyproject.toml files, this tree's path, the Python's version); made again when that changes or when it
is missing or was left half made."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")  # Debian's (python3-venv: scripts/install-system.sh installs it)
_PREFIX = "venv-unprivileged-"
_DONE = ".complete"  # written last: a directory without it was interrupted
PIP = ["{venv}/bin/pip", "install", "-q", "--disable-pip-version-check"]


def _key() -> str:
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    digest = hashlib.sha256(f"{version}\0{ROOT}\0".encode())
    for project in (ROOT / "pyproject.toml", ROOT / "src" / "client" / "pyproject.toml"):
        digest.update(project.read_bytes())
    return digest.hexdigest()[:16]


def unprivileged_venv() -> Path:
    """The virtualenv's directory (its `bin/python`, `bin/repo2docker`), made if need be."""
    cache = ROOT / ".cache"
    venv = cache / f"{_PREFIX}{_key()}"
    if (venv / _DONE).exists():
        return venv
    cache.mkdir(exist_ok=True)
    for old in cache.glob(f"{_PREFIX}*"):  # other dependency sets, or an interrupted one
        shutil.rmtree(old)
    steps = [
        [str(SYSTEM_PYTHON), "-m", "venv", str(venv)],
        [*PIP, "-e", str(ROOT)],
        [*PIP, "--no-deps", "-e", str(ROOT / "src" / "client")],  # the client editable too (bootstrap.sh)
    ]
    for argv in steps:
        argv[0] = argv[0].replace("{venv}", str(venv))
        # umask 022: everyone may read and run what it installs, whatever the caller's umask
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False, umask=0o022)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (venv / _DONE).touch()
    return venv
