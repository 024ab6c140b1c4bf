#!/usr/bin/env bash
# The quick start: install what is missing, start dockerd and a registry if none is running, serve the
# API on the embedded default and build the example repository (examples/hello), streaming to ready.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
./scripts/bootstrap.sh local
eval "$(.venv/bin/python scripts/world.py up)"   # DOCKER_HOST, BINDER_WORLD_REGISTRY
export PATH="$root/.venv/bin:$PATH"

work=$(mktemp -d)
port=${DEMO_PORT:-8585}
cleanup() {
  [ -n "${svc:-}" ] && kill "$svc" 2>/dev/null || true
  [ -n "${gitd:-}" ] && kill "$gitd" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The example as a git repository, served over git:// on loopback. A fresh commit each run, so the
# demo always shows a real build rather than an image found in the registry.
mkdir -p "$work/repos/hello"
cp -r examples/hello/. "$work/repos/hello/"
git -C "$work/repos/hello" init -q -b main
date -u +"%Y-%m-%dT%H:%M:%SZ" >"$work/repos/hello/built-at.txt"
git -C "$work/repos/hello" add -A
git -C "$work/repos/hello" -c user.name=demo -c user.email=demo@example.org commit -qm "hello example"
gitport=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
git daemon --reuseaddr --export-all --base-path="$work/repos" --listen=127.0.0.1 --port="$gitport" "$work/repos" &
gitd=$!

# The example's git server is on loopback, which the egress policy refuses unless told otherwise.
BINDER_SERVICE_REGISTRY_URL="http://$BINDER_WORLD_REGISTRY" BINDER_SERVICE_IMAGE_PREFIX=demo/ \
  BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS=true binder-service serve --port "$port" >"$work/service.log" 2>&1 &
svc=$!
for _ in $(seq 600); do  # /health also asks repo2docker itself once: seconds on a busy machine
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 "$svc" 2>/dev/null || { cat "$work/service.log"; exit 1; }
  sleep 0.1
done
echo "binder-service is up on http://127.0.0.1:$port/ (API docs: /docs); building the example:"
binder-service build "git://127.0.0.1:$gitport/hello" --ref main --url "http://127.0.0.1:$port/"
