#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine as root: installs what it needs, builds a real
# Debian root filesystem with a small Python app (cached), starts a loopback registry and
# Mosquitto, pushes the app as a plain gzip image, as eStargz and optimized, then deploys it
# over a simulated slow link (netns + veth, shaped in the kernel) through MQTT and prints the
# time to ready of each. Usage: scripts/demo.sh [--profile lte|ci|edge] [--json] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export EDGESTAR_CACHE_DIR=${EDGESTAR_CACHE_DIR:-$PWD/.cache}
EDGESTAR_TEST_ROOTFS=$(bash scripts/build-rootfs.sh "$EDGESTAR_CACHE_DIR")
export EDGESTAR_TEST_ROOTFS
export EDGESTAR_LOG_LEVEL=${EDGESTAR_LOG_LEVEL:-warn}
exec node --enable-source-maps dist/scripts/demo/main.js "$@"
