#!/usr/bin/env bash
# Every benchmark in turn, against the local world (dockerd, registry, busybox image: scripts/world.py).
# Prints figures only (no pass/fail on timings). Output is also kept in $BENCH_OUT (default: a new
# directory under /tmp). Takes about 4-6 minutes on the 2-core machine.
#
#   bench/run_all.sh            # everything
#   bench/run_all.sh --quick    # smaller counts for a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
out=${BENCH_OUT:-$(mktemp -d /tmp/binder-bench-XXXXXX)}
mkdir -p "$out"
quick=()
[ "${1:-}" = "--quick" ] && quick=(--quick)

"$py" scripts/world.py up >/dev/null
echo "results in $out"

echo "== 0/4 idle memory (new store, restart) =="
if [ ${#quick[@]} -gt 0 ]; then rounds=(--rounds 1); else rounds=(--rounds 3); fi
"$py" bench/idle.py "${rounds[@]}" | tee "$out/idle.txt"

echo "== 1/4 cached path (latency, throughput, service RSS) =="
"$py" bench/cached_path.py "${quick[@]}" --json "$out/cached_path.json" | tee "$out/cached_path.txt"

echo "== 2/4 dedup (200 identical requests for a new commit) =="
"$py" bench/dedup.py | tee "$out/dedup.txt"

echo "== 3/4 build overhead (service vs repo2docker directly) =="
if [ ${#quick[@]} -gt 0 ]; then runs=(--runs 2); else runs=(--runs 5); fi
"$py" bench/build_overhead.py "${runs[@]}" | tee "$out/build_overhead.txt"

echo "== 4/4 profile of the cached path (py-spy) =="
if command -v py-spy >/dev/null || [ -x /tmp/pyspy/bin/py-spy ]; then
  "$py" bench/profile_cached.py --out "$out/profile" | tee "$out/profile.txt"
else
  echo "py-spy not found; skipped (python -m pip install --target /tmp/pyspy py-spy)"
fi
echo "results in $out"
