#!/usr/bin/env bash
# Install the system packages binder-service's demo and tests need on a Debian bookworm machine:
# a Docker engine (+ buildx, which repo2docker builds and pushes through), buildah (the daemonless
# engine) with runc and uidmap, a registry, git's daemon,
# busybox-static and debootstrap for base images nothing can pull. Idempotent: a second run is a no-op.
# Usage: scripts/install-system.sh [--browser] [--build-user NAME]
#   --browser: also Chromium, for the JupyterHub browser tests
#   --build-user NAME: a system user for rootless buildah builds (BINDER_SERVICE_BUILD_USER): home
#     /var/lib/NAME, no login shell, 65536 subordinate uids and gids of its own in /etc/subuid, /etc/subgid
set -euo pipefail
browser=false
build_user=
while [ $# -gt 0 ]; do
  case "$1" in
    --browser) browser=true ;;
    --build-user) build_user=${2:?--build-user needs a name}; shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-registry >/dev/null || need+=(docker-registry)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v git >/dev/null || need+=(git)
command -v ip >/dev/null || need+=(iproute2)
# the build store's tests run a PostgreSQL cluster of their own (tests/support/postgres.py)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
# the metrics test scrapes a running service with a real Prometheus (tests/test_metrics_prometheus.py)
command -v prometheus >/dev/null || need+=(prometheus)
# engine buildah (BINDER_SERVICE_ENGINE=buildah): daemonless builds; runc runs RUN steps as root,
# newuidmap/newgidmap (uidmap) map a rootless user's ids
command -v buildah >/dev/null || need+=(buildah)
command -v runc >/dev/null || need+=(runc)
command -v newuidmap >/dev/null || need+=(uidmap)
# the rootless end-to-end test runs the service as the build user, from a virtualenv of Debian's Python
# (tests/support/unprivileged_venv.py): the project's own may live where that user cannot read
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if $browser; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v npm >/dev/null || need+=(npm)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# buildx: Debian ships a static build in trixie only; fetch just that one package from trixie.
if ! docker buildx version >/dev/null 2>&1; then
  echo "installing: docker-buildx (from trixie)"
  t=$(mktemp -d)
  mkdir -p "$t/lists/partial"
  echo 'deb http://deb.debian.org/debian trixie main' >"$t/sources.list"
  o=(-o "Dir::Etc::SourceList=$t/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$t/lists")
  apt-get "${o[@]}" update -qq
  (cd "$t" && apt-get "${o[@]}" download docker-buildx >/dev/null)
  dpkg -i "$t"/docker-buildx_*.deb >/dev/null
  rm -rf "$t"
fi

# The rootless build user: created once, with a subordinate id range after every range already given out.
if [ -n "$build_user" ]; then
  if ! id "$build_user" >/dev/null 2>&1; then
    echo "creating build user: $build_user"
    useradd --system --create-home --home-dir "/var/lib/$build_user" --shell /usr/sbin/nologin "$build_user"
  fi
  for f in /etc/subuid /etc/subgid; do
    touch "$f"
    if ! grep -q "^$build_user:" "$f"; then
      start=$(awk -F: 'BEGIN { m = 100000 } { e = $2 + $3; if (e > m) m = e } END { print m }' "$f")
      echo "$build_user:$start:65536" >>"$f"
    fi
  done
fi
