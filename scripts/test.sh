#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs everything it needs, starts the local world,
# then lint, types, tests (unit + real dockerd/registry/git) and the docs build (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh dev
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
mypy
# The 25 slowest tests, every run: where the suite's time goes (issue 17).
pytest --durations=25 "$@"
sphinx-build -q -W --keep-going -b html docs docs/_build/html
echo "all checks passed"
