#!/usr/bin/env bash
# Builds (once) a real Debian bookworm root filesystem for test and demo images, with
# Python 3 and a small application at /app/app.py. The result is cached: later calls
# print the path at once. Usage: scripts/build-rootfs.sh [CACHE_DIR] -> prints ROOTFS dir
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${1:-${EDGESTAR_CACHE_DIR:-$PWD/.cache}}
rootfs="$cache/rootfs-bookworm-py"
# The marker of a finished build lives beside the tree, so images made from it never carry it.
marker="$rootfs.complete"
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
import signal, sys

# As pid 1 of its container the kernel ignores SIGTERM unless a handler is set, and over a
# lazy image the imports below can take seconds: so the handler comes before them.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

import argparse, base64, collections, datetime, email.message, hashlib, logging

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

# A tree finished by an older version of this script has its marker inside: move it out
# (a fresh stamp, so caches keyed by it convert the tree without the marker again).
if [ -f "$rootfs/.edgestar-complete" ]; then touch "$marker"; rm -f "$rootfs/.edgestar-complete"; fi
if [ -f "$marker" ] && [ -d "$rootfs" ]; then write_app "$rootfs"; echo "$rootfs"; exit 0; fi

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
# A tree without a marker is an interrupted build: replaced whole, never built into.
rm -rf "$rootfs"
mv "$rootfs.tmp" "$rootfs"
touch "$marker"
echo "$rootfs"
