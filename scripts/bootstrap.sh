#!/usr/bin/env bash
# Everything a fresh machine needs before the demo or the tests: system packages, the project's
# virtualenv (.venv) with the given extras, and the local world (dockerd, registry, base images).
# Usage: scripts/bootstrap.sh [extras]     (default extras: local)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-local}
# The dev extra runs the JupyterHub tests: Chromium, configurable-http-proxy and the single-user image too.
hub=false
[ "$extras" = "dev" ] && hub=true
if $hub; then ./scripts/install-system.sh --browser; else ./scripts/install-system.sh; fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$extras
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing binder-service[$extras] into .venv"
  # binder-service (and with dev, hub_extension's binder-service-hub) depend on binder-service-client in
  # src/client/, which pip installs from that folder; it is then made editable too (pip refuses an
  # editable install beside a folder reference to the same project in one command).
  hub_pkg=()
  $hub && hub_pkg=(-e ./hub_extension)
  .venv/bin/pip install -q --disable-pip-version-check "${hub_pkg[@]}" -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e ./src/client 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import binder_service, binder_service_client" && touch "$stamp"
fi
if $hub; then
  # configurable-http-proxy (npm) in a project-local, git-ignored directory; JupyterHub is pointed at it.
  if [ ! -x .cache/node/node_modules/.bin/configurable-http-proxy ]; then
    echo "installing configurable-http-proxy into .cache/node"
    mkdir -p .cache/node
    npm install --prefix .cache/node --no-audit --no-fund --loglevel=error configurable-http-proxy@5 >/dev/null
  fi
  .venv/bin/python scripts/world.py up --hub >/dev/null
else
  .venv/bin/python scripts/world.py up >/dev/null
fi
