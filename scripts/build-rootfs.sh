#!/usr/bin/env bash
# Builds (once) a real Debian bookworm root filesystem for test and demo images, with
# Python 3 and a small application at /app/app.py. The result is cached: later calls
# print the path at once. Usage: scripts/build-rootfs.sh [CACHE_DIR] -> prints ROOTFS dir
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${1:-${EDGESTAR_CACHE_DIR:-$PWD/.cache}}
rootfs="$cache/rootfs-bookworm-py"
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}

if [ -f "$rootfs/.edgestar-complete" ]; then echo "$rootfs"; exit 0; fi

command -v debootstrap >/dev/null || {
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
rm -rf "$rootfs.tmp" && mkdir -p "$cache"
echo "build-rootfs: debootstrap bookworm into $rootfs (about a minute, once)" >&2
debootstrap --variant=minbase --include=python3-minimal bookworm "$rootfs.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
  echo "build-rootfs: debootstrap failed; see $cache/debootstrap.log" >&2; exit 1; }

# Trim what no container needs, keep the tree realistic (about 150-200 MB).
rm -rf "$rootfs.tmp"/var/cache/apt/archives/*.deb "$rootfs.tmp"/var/lib/apt/lists/*

mkdir -p "$rootfs.tmp/app"
cat >"$rootfs.tmp/app/app.py" <<'PY'
import json, hashlib, sys, time
started = time.time()
digest = hashlib.sha256(json.dumps({"hello": "edge"}).encode()).hexdigest()[:12]
print(f"edgestar-demo ready {digest} python {sys.version_info.major}.{sys.version_info.minor}", flush=True)
PY
touch "$rootfs.tmp/.edgestar-complete"
mv "$rootfs.tmp" "$rootfs"
echo "$rootfs"
