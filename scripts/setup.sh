#!/usr/bin/env bash
# Installs everything edgestar needs on a Debian 12 machine, idempotently:
# Debian packages (FUSE, registry, broker, runtimes, link shaping, debootstrap),
# npm dependencies, and the compiled JavaScript in dist/.
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  mount                     # mount(8) hands /dev/fuse to the kernel; no libfuse or fusermount
  docker-registry           # the CNCF distribution server, used on loopback by tests and the demo
  mosquitto mosquitto-clients
  runc                      # crun fails on this kernel's hybrid cgroups (shared/NOTES.md)
  tini                      # /usr/bin/tini-static: the init of `deploy --init`, bound into containers
  iproute2 iptables         # network namespaces, veth, tbf shaping for the simulated link
  gcc libc6-dev libnetfilter-queue-dev  # builds scripts/link/nfq-delay.c: the link's delay (no netem here)
  util-linux curl           # nsenter for the device namespace; curl for health checks
  debootstrap               # real Debian root filesystems for test images
  python3 ca-certificates
  attr                      # getfattr: edgestar convert reads xattrs of a directory input
)

# Node.js is the one thing setup does not install (Debian 12 ships 18); say so plainly.
node_version=$(node -p 'process.versions.node' 2>/dev/null || echo 0)
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=18)?0:1)' 2>/dev/null; then
  echo "setup: edgestar needs Node.js 20.18 or newer (found ${node_version}); install it from nodejs.org or NodeSource, then run this again" >&2
  exit 1
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian packages start their own services; tests start private instances on loopback.
for svc in docker-registry mosquitto; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done

stamp=node_modules/.edgestar-install-stamp
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2   # stdout stays free for --json output
  touch "$stamp"
fi

if [ "${1:-}" != "--no-build" ]; then
  npx tsc -p tsconfig.json
fi
