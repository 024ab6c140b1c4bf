#!/usr/bin/env bash
# Build every artifact of a release into dist/: both packages (wheel + sdist), the chart (.tgz + index.yaml),
# the service, hub and builder images (references in dist/images.txt), all stamped with VERSION.
# Usage: scripts/release.sh VERSION [--image-prefix PREFIX] [--push] [...]   (--help for all options)
# The release workflow (.github/workflows/release.yml) runs exactly this; the logic is in scripts/release.py.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${RELEASE_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
exec "$python" "$root/scripts/release.py" "$@"
