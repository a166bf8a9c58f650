#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine as root. For now: build a real Debian root
# filesystem, convert it to eStargz, inspect and verify the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rootfs=$(bash scripts/build-rootfs.sh)
out=${EDGESTAR_CACHE_DIR:-$PWD/.cache}/demo
mkdir -p "$out"
bin/edgestar convert "$rootfs" "$out/rootfs.estargz.tar.gz" --prioritize /app/app.py
bin/edgestar inspect "$out/rootfs.estargz.tar.gz"
bin/edgestar verify "$out/rootfs.estargz.tar.gz"
