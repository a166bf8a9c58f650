#!/usr/bin/env bash
# Event-loop blocking in the serving process during a full pull with reads through the
# mount (see bench/loop-block.ts). With OTHER_CHECKOUT (a checkout with node_modules, e.g.
# an older commit exported with git archive), its rounds alternate with this checkout's,
# so both share the machine's load of the moment; each checkout's bench is built first.
# Usage: bash bench/loop-block.sh [OTHER_CHECKOUT]   (BENCH_ROUNDS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGESTAR_CACHE_DIR=${EDGESTAR_CACHE_DIR:-$PWD/.cache}
export EDGESTAR_LOG_LEVEL=${EDGESTAR_LOG_LEVEL:-warn}
[ -f "$EDGESTAR_CACHE_DIR/bench-fuse/rootfs.estargz.json" ] || {
  echo "loop-block: run bash bench/fuse.sh once first (it builds the rootfs blob)" >&2
  exit 1
}
checkouts=("$PWD")
if [ -n "${1:-}" ]; then
  other=$(cd "$1" && pwd)
  cp bench/loop-block.ts "$other/bench/loop-block.ts"
  checkouts+=("$other")
fi
for dir in "${checkouts[@]}"; do (cd "$dir" && npx tsc -p tsconfig.json); done
for ((round = 1; round <= ${BENCH_ROUNDS:-3}; round++)); do
  for dir in "${checkouts[@]}"; do
    (cd "$dir" && node --enable-source-maps dist/bench/loop-block.js)
  done
done
