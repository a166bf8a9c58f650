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

# The application is (re)written on every call, so a cached root filesystem always carries
# the current version. It uses only modules python3-minimal ships.
write_app() {
  mkdir -p "$1/app"
  local tmp="$1/app/.app.py.new"
  cat >"$tmp" <<'PY'
# A small stand-in for a gateway application: loads a handful of standard modules, does a
# little work, and prints the ready line the demo and the tests wait for.
import argparse, base64, collections, datetime, email.message, hashlib, logging, sys

parser = argparse.ArgumentParser(description="edgestar demo app")
parser.add_argument("--name", default="edge")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")
counts = collections.Counter(args.name)
note = email.message.EmailMessage()
note["Subject"] = f"hello {args.name}"
digest = hashlib.sha256(base64.b64encode(note.as_bytes())).hexdigest()[:12]
stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
print(f"edgestar-demo ready {digest} python {sys.version_info.major}.{sys.version_info.minor} at {stamp}", flush=True)
PY
  if cmp -s "$tmp" "$1/app/app.py"; then rm -f "$tmp"; else mv "$tmp" "$1/app/app.py"; fi
}

if [ -f "$rootfs/.edgestar-complete" ]; then write_app "$rootfs"; echo "$rootfs"; exit 0; fi

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

write_app "$rootfs.tmp"
touch "$rootfs.tmp/.edgestar-complete"
mv "$rootfs.tmp" "$rootfs"
echo "$rootfs"
