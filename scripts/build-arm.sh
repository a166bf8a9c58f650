#!/usr/bin/env bash
# Cross-builds a self-contained edgestar package for an ARM gateway and smoke-tests it
# under qemu-user: the target's Node.js, dist/, production node_modules with the two
# native addons (better-sqlite3, zstd-napi) compiled for the target, and a bin/edgestar
# launcher that uses the bundled Node. FUSE needs no addon: edgestar speaks the kernel
# protocol over /dev/fuse itself.
#
# Usage: scripts/build-arm.sh arm64|armv7 [OUTDIR] [--no-smoke] [--node-tarball FILE]
#   as root, on Debian 12 x86-64. OUTDIR defaults to .cache/arm/out; the tarball is
#   edgestar-VERSION-linux-ARCH.tar.gz. --no-smoke skips the qemu smoke test.
#   --node-tarball packages a Node release given by hand instead of the npm registry's.
#
# Packages the committed tree (HEAD), not uncommitted edits. Installs what it needs,
# idempotently: Debian's cross compilers, qemu-user-static and the target's libstdc++6/
# libatomic1 (dpkg --add-architecture), and the target Node from the npm registry.
# Work happens in .cache/arm/ARCH/ (built addons are kept there for the next run); the
# checkout's node_modules and dist/ are never used (they hold the x86-64 addons tests need).
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
[ -n "$target" ] || fail "no target given" \
  "usage: scripts/build-arm.sh arm64|armv7 [OUTDIR] [--no-smoke] [--node-tarball FILE]"
shift
# shellcheck source=scripts/arm/targets.sh
source "$repo/scripts/arm/targets.sh" "$target" ||
  fail "unknown target '$target'" "use arm64 (aarch64, 64-bit) or armv7 (armhf, 32-bit)"
outdir="$repo/.cache/arm/out"
smoke=yes
node_tarball=
while [ $# -gt 0 ]; do
  case "$1" in
    --no-smoke) smoke=no ;;
    --node-tarball)
      [ -f "${2:-}" ] || fail "--node-tarball needs a file (got '${2:-}')" \
        "pass an official node-vX.Y.Z-linux-ARCH.tar.xz (or .tar.gz) from nodejs.org"
      node_tarball=$(readlink -f "$2")
      shift
      ;;
    -*) fail "unknown option $1" "options: --no-smoke, --node-tarball FILE" ;;
    *) outdir=$(mkdir -p "$1" && cd "$1" && pwd) ;;
  esac
  shift
done
# A Node build brought by hand (nodejs.org publishes armv7l builds the npm registry lacks):
# its version comes from its headers, its integrity is the operator's to check.
if [ -n "$node_tarball" ]; then
  header=$(tar -xOf "$node_tarball" --wildcards '*/include/node/node_version.h' 2>/dev/null) ||
    fail "$node_tarball has no include/node/node_version.h" "use a Node release tarball with headers (the linux-* builds have them)"
  part() { echo "$header" | awk -v name="NODE_$1_VERSION" '$1 == "#define" && $2 == name {print $3; exit}'; }
  NODE_VERSION="$(part MAJOR).$(part MINOR).$(part PATCH)"
  NODE_PKG="$(basename "$node_tarball")"
fi
[ "$(id -u)" = 0 ] || fail "must run as root" "it installs Debian packages and registers qemu with binfmt_misc"
[ "$(uname -m)" = x86_64 ] || fail "the build machine must be x86-64 (found $(uname -m))" \
  "on an ARM board, run scripts/setup.sh there instead: it builds the addons natively"
command -v apt-get >/dev/null || fail "apt-get not found" "this script expects Debian 12 (bookworm)"
command -v node >/dev/null || fail "node not found on the build machine" \
  "install Node.js 20.18+ (it runs npm, node-gyp and tsc here), then run this again"

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null) ||
  fail "$repo is not a git checkout" "the package is built from the committed tree; clone the repository"
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
git -C "$repo" archive HEAD src schemas package.json package-lock.json tsconfig.json \
  README.md docs deploy/systemd | tar -x -C "$stage"
if [ -n "$(git -C "$repo" status --porcelain -- src schemas package.json package-lock.json)" ]; then
  say "note: packaging commit $commit; uncommitted changes in src/ or schemas/ are not included"
fi
# npm's own semver, so the check runs before any npm install.
semver="$(npm root -g)/npm/node_modules/semver"
if ! refusals=$(node "$repo/scripts/arm/check-engines.mjs" "$stage" "$NODE_VERSION" "$semver"); then
  echo "$refusals" | sed 's/^/  /' >&2
  fail "$target cannot be packaged: the packages above refuse Node $NODE_VERSION ($NODE_PKG)" \
    "bring an official Node 20.18+ for $target with --node-tarball FILE, or run scripts/setup.sh on the board (deploy/$target/README.md)"
fi

# 2. Debian packages: cross compilers, qemu, and the target's runtime libraries.
step "installing Debian packages for $DEB_ARCH (skipped when present)"
bash "$repo/scripts/arm/apt-deps.sh" "$DEB_ARCH" "$TRIPLET"

# 3. The target Node: from the npm registry, checked against the pinned integrity, or the
# tarball given with --node-tarball. Each source unpacks into its own folder.
if [ -n "$node_tarball" ]; then
  step "unpacking $node_tarball (Node $NODE_VERSION)"
  node_tgz=$node_tarball
  say "sha256 $(sha256sum "$node_tgz" | cut -d' ' -f1): compare it with the release's SHASUMS256.txt"
  nodedir="$work/node-$(sha256sum "$node_tgz" | cut -c1-16)"
else
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
  nodedir="$work/node-$NODE_VERSION"
fi
if [ ! -x "$nodedir/bin/node" ]; then
  rm -rf "$nodedir" && mkdir -p "$nodedir"
  tar -xf "$node_tgz" -C "$nodedir" --strip-components=1
fi
machine=$(readelf -h "$nodedir/bin/node" | awk -F': *' '/Machine:/ {print $2}')
if [ "$machine" != "$ELF_MACHINE" ]; then
  rm -rf "$nodedir"
  fail "$node_tgz holds a Node for $machine, not $ELF_MACHINE" "use the Node build for $PLATFORM"
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

# 5. The two addons, cross-compiled against the target Node's headers. They are kept,
# keyed by everything that shapes them, so a rebuild of the same lock file takes seconds.
addons=(better-sqlite3/build/Release/better_sqlite3.node zstd-napi/build/Release/binding.node)
key=$( (cat "$stage/package-lock.json" "$repo/scripts/arm/build-addons.sh"
  echo "node $NODE_VERSION $GYP_ARCH"   # the headers, not where the binary came from
  "$TRIPLET-gcc" --version | head -n 1) | sha256sum | cut -c1-16)
addon_cache="$work/addons-$key.tar"
if [ -f "$addon_cache" ]; then
  step "reusing the addons built for this lock file and Node ($addon_cache)"
  tar -xf "$addon_cache" -C "$stage/node_modules"
else
  step "cross-compiling the native addons for $target (a few minutes)"
  bash "$repo/scripts/arm/build-addons.sh" "$stage" "$nodedir" "$GYP_ARCH" "$TRIPLET"
  rm -f "$work"/addons-*.tar
  tar -cf "$addon_cache.tmp" -C "$stage/node_modules" "${addons[@]}"
  mv "$addon_cache.tmp" "$addon_cache"
fi

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
