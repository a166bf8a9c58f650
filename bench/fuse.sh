#!/usr/bin/env bash
# FUSE benchmark: warm sequential read and a 10k-file stat/readdir walk through the mount
# versus local disk, and background-cap accuracy at three rates. Prints ratios.
# Usage: bash bench/fuse.sh   (BENCH_CAP_WINDOW_SEC=30 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGESTAR_CACHE_DIR=${EDGESTAR_CACHE_DIR:-$PWD/.cache}
npx tsc -p tsconfig.json
EDGESTAR_TEST_ROOTFS=${EDGESTAR_TEST_ROOTFS:-$(bash scripts/build-rootfs.sh "$EDGESTAR_CACHE_DIR")}
export EDGESTAR_TEST_ROOTFS
export EDGESTAR_LOG_LEVEL=${EDGESTAR_LOG_LEVEL:-warn}
export UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-32}
node --enable-source-maps dist/bench/fuse.js
