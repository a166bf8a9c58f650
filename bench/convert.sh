#!/usr/bin/env bash
# Converter benchmark: edgestar convert + full verified read vs the reference refgen,
# on a ~200 MB real tree (Debian rootfs + generated files). Prints a table and ratios.
# Usage: bash bench/convert.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGESTAR_CACHE_DIR=${EDGESTAR_CACHE_DIR:-$PWD/.cache}
npx tsc -p tsconfig.json
EDGESTAR_TEST_ROOTFS=${EDGESTAR_TEST_ROOTFS:-$(bash scripts/build-rootfs.sh "$EDGESTAR_CACHE_DIR")}
export EDGESTAR_TEST_ROOTFS
export EDGESTAR_LOG_LEVEL=${EDGESTAR_LOG_LEVEL:-warn}
node --enable-source-maps dist/bench/convert.js
