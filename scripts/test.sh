#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine as root: installs what it needs,
# type-checks, lints, builds shared fixtures once, then runs every test with node:test.
# Usage: scripts/test.sh [TEST_FILE_FILTER]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-build

echo "test: type check and compile" >&2
npx tsc -p tsconfig.json
echo "test: lint and format check" >&2
npx biome check src test bench scripts

# Expensive fixtures are built once per machine and shared by every test file.
export EDGESTAR_CACHE_DIR=${EDGESTAR_CACHE_DIR:-$PWD/.cache}
EDGESTAR_TEST_ROOTFS=$(bash scripts/build-rootfs.sh "$EDGESTAR_CACHE_DIR")
export EDGESTAR_TEST_ROOTFS
export EDGESTAR_LOG_LEVEL=${EDGESTAR_LOG_LEVEL:-warn}
# Each FUSE mount keeps device reads waiting on the libuv thread pool (src/fs/kernel/thread-pool.ts).
export UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-32}

mapfile -t files < <(find dist/test -name '*.test.js' | sort | grep -E -- "${1:-.}")
echo "test: running ${#files[@]} test files" >&2
node --enable-source-maps --test --test-concurrency=1 --test-timeout=900000 "${files[@]}"
