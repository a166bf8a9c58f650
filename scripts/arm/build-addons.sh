#!/usr/bin/env bash
# Cross-compiles edgestar's two native addons inside a staging node_modules.
# Usage: scripts/arm/build-addons.sh STAGE NODEDIR GYP_ARCH TRIPLET
#   STAGE    a directory with node_modules installed by npm ci --ignore-scripts
#   NODEDIR  the unpacked target Node package (bin/node, include/node)
set -euo pipefail
stage=$1
nodedir=$2
gyp_arch=$3
triplet=$4

say() { echo "build-arm: $*" >&2; }
fail() {
  echo "build-arm: error: $1" >&2
  [ -n "${2:-}" ] && echo "hint: $2" >&2
  exit 1
}

# npm's own node-gyp: the same one that builds the addons on a board.
node_gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$node_gyp" ] || fail "node-gyp not found at $node_gyp" \
  "it ships with npm; reinstall npm (npm install -g npm@11) or check npm root -g"

export CC="$triplet-gcc" CXX="$triplet-g++" LINK="$triplet-g++" AR="$triplet-ar"
export CC_host=gcc CXX_host=g++ LINK_host=g++ AR_host=ar
jobs=$(nproc)
for addon in better-sqlite3 zstd-napi; do
  dir="$stage/node_modules/$addon"
  [ -d "$dir" ] || fail "$addon is not in $stage/node_modules" "it is a dependency in package.json; rerun the build"
  say "  $addon: node-gyp rebuild --arch=$gyp_arch"
  log="$stage/$addon.build.log"
  begun=$SECONDS
  if ! (cd "$dir" && node "$node_gyp" rebuild --release --arch="$gyp_arch" --nodedir="$nodedir" \
    --jobs="$jobs" >"$log" 2>&1); then
    tail -n 30 "$log" >&2
    fail "cross-compiling $addon failed (full log: $log)" \
      "a missing cross compiler or header shows above; rerun after fixing it"
  fi
  say "  $addon: built in $((SECONDS - begun))s"
done
