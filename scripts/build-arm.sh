#!/usr/bin/env bash
# Cross-builds a self-contained edgestar package for an ARM gateway and smoke-tests it
# under qemu-user: the target's Node.js, dist/, production node_modules with the three
# native addons (better-sqlite3, zstd-napi, fuse-native) compiled for the target, and a
# bin/edgestar launcher that uses the bundled Node.
#
# Usage: scripts/build-arm.sh arm64|armv7 [OUTDIR]      (as root, on Debian 12 x86-64)
#   OUTDIR defaults to .cache/arm/out; the tarball is edgestar-VERSION-linux-ARCH.tar.gz.
#   --no-smoke after the target skips the qemu smoke test.
#
# Installs what it needs, idempotently: Debian's cross compilers, qemu-user-static and the
# target's libstdc++6/libatomic1/libfuse2 (dpkg --add-architecture), and the target Node
# from the npm registry. Work happens in .cache/arm/ARCH/; the checkout's node_modules and
# dist/ are never written (they hold the x86-64 addons that tests run with).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
started=$SECONDS

say() { echo "build-arm: $*" >&2; }
fail() {
  echo "build-arm: error: $1" >&2
  [ -n "${2:-}" ] && echo "hint: $2" >&2
  exit 1
}
# step TITLE: prints a numbered progress line with the time spent so far.
step_no=0
step() {
  step_no=$((step_no + 1))
  say "[$step_no/8 +$((SECONDS - started))s] $*"
}

target=${1:-}
[ -n "$target" ] || fail "no target given" "usage: scripts/build-arm.sh arm64|armv7 [OUTDIR] [--no-smoke]"
shift
# shellcheck source=scripts/arm/targets.sh
source "$repo/scripts/arm/targets.sh" "$target" ||
  fail "unknown target '$target'" "use arm64 (aarch64, 64-bit) or armv7 (armhf, 32-bit)"
outdir="$repo/.cache/arm/out"
smoke=yes
for arg in "$@"; do
  case "$arg" in
    --no-smoke) smoke=no ;;
    -*) fail "unknown option $arg" "the only option is --no-smoke" ;;
    *) outdir=$(mkdir -p "$arg" && cd "$arg" && pwd) ;;
  esac
done

[ "$(id -u)" = 0 ] || fail "must run as root" "it installs Debian packages and registers qemu with binfmt_misc"
[ "$(uname -m)" = x86_64 ] || fail "the build machine must be x86-64 (found $(uname -m))" \
  "on an ARM board, run scripts/setup.sh there instead: it builds the addons natively"
command -v apt-get >/dev/null || fail "apt-get not found" "this script expects Debian 12 (bookworm)"
command -v node >/dev/null || fail "node not found on the build machine" \
  "install Node.js 20.18+ (it runs npm, node-gyp and tsc here), then run this again"

version=$(git -C "$repo" show HEAD:package.json | node -p "JSON.parse(require('fs').readFileSync(0)).version")
name="edgestar-$version-$PLATFORM"
work="$repo/.cache/arm/$target"
mkdir -p "$work" "$outdir"

# 1. The committed tree (HEAD: a package is made from a commit, and others' half-done
# edits in the checkout must not break it). Its target Node must satisfy every engines
# range in it, or the package would ship broken.
step "exporting HEAD; checking that Node $NODE_VERSION for $target meets the engines ranges"
stage="$work/stage"
rm -rf "$stage" && mkdir -p "$stage"
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null) ||
  fail "$repo is not a git checkout" "the package is built from the committed tree; clone the repository"
git -C "$repo" archive HEAD src schemas package.json package-lock.json tsconfig.json | tar -x -C "$stage"
if [ -n "$(git -C "$repo" status --porcelain -- src schemas package.json package-lock.json)" ]; then
  say "note: packaging commit $commit; uncommitted changes in src/ or schemas/ are not included"
fi
# npm's own semver, so the check runs before any npm install.
semver="$(npm root -g)/npm/node_modules/semver"
if ! refusals=$(node "$repo/scripts/arm/check-engines.mjs" "$stage" "$NODE_VERSION" "$semver"); then
  echo "$refusals" | sed 's/^/  /' >&2
  fail "$target cannot be packaged: the packages above refuse Node $NODE_VERSION, the newest $NODE_PKG on the npm registry" \
    "run edgestar on the board with an official Node 20.18+ for it and scripts/setup.sh (deploy/$target/README.md)"
fi

# 2. Debian packages: cross compilers, qemu, and the target's runtime libraries.
step "installing Debian packages for $DEB_ARCH (skipped when present)"
bash "$repo/scripts/arm/apt-deps.sh" "$DEB_ARCH" "$TRIPLET"

# 3. The target Node from the npm registry, checked against the pinned integrity.
step "fetching $NODE_PKG@$NODE_VERSION from the npm registry (cached)"
node_tgz="$repo/.cache/arm/$NODE_PKG-$NODE_VERSION.tgz"
if [ ! -f "$node_tgz" ]; then
  npm pack "$NODE_PKG@$NODE_VERSION" --pack-destination "$repo/.cache/arm" --silent >/dev/null ||
    fail "npm pack $NODE_PKG@$NODE_VERSION failed" "check that the npm registry is reachable (npm ping)"
fi
actual=$(node -e "const c=require('crypto');process.stdout.write('sha512-'+c.createHash('sha512').update(require('fs').readFileSync(process.argv[1])).digest('base64'))" "$node_tgz")
if [ "$actual" != "$NODE_INTEGRITY" ]; then
  rm -f "$node_tgz"
  fail "$NODE_PKG-$NODE_VERSION.tgz does not match the integrity pinned in scripts/arm/targets.sh" \
    "the download was removed; run again, and if it persists compare with npm view $NODE_PKG@$NODE_VERSION dist.integrity"
fi
nodedir="$work/node"
if [ ! -x "$nodedir/bin/node" ]; then
  rm -rf "$nodedir" && mkdir -p "$nodedir"
  tar -xzf "$node_tgz" -C "$nodedir" --strip-components=1
fi

# 4. Dependencies without install scripts (they would build for x86-64, and
# prebuild-install would reach for GitHub); dist/ compiled from src/ with the tree's own
# typescript, then the dev dependencies pruned. The checkout's node_modules is not used.
step "installing npm dependencies into $stage and compiling src/ of $commit"
cp "$repo/scripts/arm/tsconfig.build.json" "$stage/"
npm_quiet=(--ignore-scripts --no-audit --no-fund --loglevel=error)
(cd "$stage" && npm ci "${npm_quiet[@]}") ||
  fail "npm ci in $stage failed" "check that the npm registry is reachable; the lock file must match package.json"
(cd "$stage" && node_modules/.bin/tsc -p tsconfig.build.json --outDir dist) ||
  fail "tsc failed on src/ of commit $commit" "fix the type errors (npx tsc -p tsconfig.json shows them), then run this again"
(cd "$stage" && npm prune --omit=dev "${npm_quiet[@]}") || fail "npm prune --omit=dev in $stage failed"

# 5. The three addons, cross-compiled against the target Node's headers.
step "cross-compiling the native addons for $target (a few minutes)"
bash "$repo/scripts/arm/build-addons.sh" "$stage" "$nodedir" "$GYP_ARCH" "$TRIPLET"

# 6. The package tree: only what runs on the device, and no binary for another machine.
step "assembling $name"
bash "$repo/scripts/arm/assemble.sh" "$stage" "$nodedir" "$work/$name" "$ELF_MACHINE" \
  "$PREBUILD_DIR"

# 7. The tarball, with stable owners, order and times so rebuilds compare byte for byte.
step "writing $outdir/$name.tar.gz"
tarball="$outdir/$name.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' \
  -C "$work" -cf - "$name" | gzip -n -9 >"$tarball.tmp"
mv "$tarball.tmp" "$tarball"
(cd "$outdir" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
say "$(du -h "$tarball" | cut -f1) $tarball"

# 8. Run it under qemu-user: CLI, zstd (inspect/verify), SQLite (pull/images), FUSE (mount).
if [ "$smoke" = yes ]; then
  step "smoke-testing $name under $QEMU_NAME"
  bash "$repo/scripts/arm/smoke.sh" "$tarball" "$QEMU_NAME" "$version"
else
  step "smoke test skipped (--no-smoke)"
fi
say "done in $((SECONDS - started))s: $tarball"
