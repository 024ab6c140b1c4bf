#!/usr/bin/env bash
# Everything a fresh machine needs before the demo or the tests: system packages, the project's
# virtualenv (.venv) with the given extras, and the local world (dockerd, registry, base images).
# Usage: scripts/bootstrap.sh [extras]     (default extras: local)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-local}
./scripts/install-system.sh
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$extras
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing binder-service[$extras] into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import binder_service" && touch "$stamp"
fi
.venv/bin/python scripts/world.py up >/dev/null
