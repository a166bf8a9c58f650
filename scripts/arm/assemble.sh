#!/usr/bin/env bash
# Lays out the package tree from a staging directory whose addons are cross-built.
# Usage: scripts/arm/assemble.sh STAGE NODEDIR OUT ELF_MACHINE PREBUILD_DIR
#   STAGE is the exported tree with dist/ compiled and production node_modules.
# Fails if any ELF file in OUT is built for another machine than ELF_MACHINE.
set -euo pipefail
stage=$1
nodedir=$2
out=$3
elf_machine=$4
prebuild_dir=$5     # prebuilds/ subfolder a Node addon loads on the target, e.g. linux-arm64

fail() {
  echo "build-arm: error: $1" >&2
  [ -n "${2:-}" ] && echo "hint: $2" >&2
  exit 1
}

rm -rf "$out"
mkdir -p "$out/bin" "$out/node/bin" "$out/dist"
cp "$nodedir/bin/node" "$out/node/bin/node"
cp "$nodedir/LICENSE" "$out/node/LICENSE"
cp -r "$stage/dist/src" "$out/dist/src"
# schemas/ and package.json are read at run time, found by walking up from dist/src/mqtt.
cp -r "$stage/schemas" "$out/schemas"
cp "$stage/package.json" "$stage/package-lock.json" "$stage/README.md" "$out/"
# docs/ is where the systemd unit's Documentation= points (/opt/edgestar/docs).
cp -r "$stage/docs" "$out/docs"
mkdir -p "$out/deploy" && cp -r "$stage/deploy/systemd" "$out/deploy/systemd"
cp -r "$stage/node_modules" "$out/node_modules"
install -m 0755 "$(dirname "$0")/launcher.sh" "$out/bin/edgestar"

# Build leftovers and binaries for other machines: object files and sources of the addons,
# and the x86-64/macOS prebuilds.
modules="$out/node_modules"
for addon in better-sqlite3 zstd-napi; do
  build="$modules/$addon/build"
  find "$build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
  find "$build/Release" -mindepth 1 ! -name '*.node' -exec rm -rf {} +
  rm -rf "$modules/$addon/deps" "$modules/$addon/src" "$modules/$addon/prebuilds"
done
rm -f "$modules/better-sqlite3/build/Release/test_extension.node"
# Packages for the Bare runtime (optional deps of streamx) carry prebuilds for other systems.
find "$modules" -type d -path '*/prebuilds/*' -prune ! -name "$prebuild_dir" -exec rm -rf {} +
find "$modules" -type d -name prebuilds -empty -delete
rm -f "$modules/.package-lock.json"

# Every ELF left must be for the target; one for the build machine would fail on the device.
wrong=$(find "$out" -type f -size +3c | while read -r file; do
  [ "$(LC_ALL=C head -c 4 "$file" | tr -d '\0')" = $'\x7fELF' ] || continue
  machine=$(readelf -h "$file" | awk -F': *' '/Machine:/ {print $2}')
  [ "$machine" = "$elf_machine" ] || echo "$file ($machine)"
done)
[ -z "$wrong" ] || fail "binaries for another machine in the package: $wrong" \
  "a dependency ships prebuilt binaries; remove them in scripts/arm/assemble.sh"
for addon in "$modules"/better-sqlite3/build/Release/better_sqlite3.node \
  "$modules"/zstd-napi/build/Release/binding.node; do
  [ -f "$addon" ] || fail "$addon was not built" "see the node-gyp log under the staging directory"
done

# The device's C libraries must be at least as new as the ones the addons were linked with.
versions=$(find "$out" -type f \( -name '*.node' -o -path '*/node/bin/node' \) -exec readelf -V --wide {} + |
  grep -o 'GLIBC_2[0-9.]*\|GLIBCXX_[0-9.]*' | sort -u)
glibc=$(echo "$versions" | grep '^GLIBC_' | sort -V | tail -n 1)
glibcxx=$(echo "$versions" | grep '^GLIBCXX_' | sort -V | tail -n 1)
echo "build-arm: the device needs ${glibc/_/ } and libstdc++ with $glibcxx (Debian 12 has glibc 2.36, GLIBCXX_3.4.30)" >&2
