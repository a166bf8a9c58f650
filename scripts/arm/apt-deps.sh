#!/usr/bin/env bash
# Installs the Debian packages an ARM cross build and its qemu smoke test need, only those
# missing, and makes qemu-user-static handle ARM binaries through binfmt_misc.
# Usage: scripts/arm/apt-deps.sh DEB_ARCH TRIPLET     (e.g. arm64 aarch64-linux-gnu)
set -euo pipefail
deb_arch=$1
triplet=$2

say() { echo "build-arm: $*" >&2; }
fail() {
  echo "build-arm: error: $1" >&2
  [ -n "${2:-}" ] && echo "hint: $2" >&2
  exit 1
}

packages=(
  "gcc-$triplet" "g++-$triplet"   # the addons have C and C++ sources
  make python3 binutils           # node-gyp; readelf checks what was built
  qemu-user-static binfmt-support # runs the target Node for the smoke test
  "libstdc++6:$deb_arch" "libatomic1:$deb_arch"  # the target Node links them
  docker-registry                 # the smoke test's registry on loopback
  mount                           # mount(8), which the smoke test's FUSE mount runs
)

# Multiarch: without the foreign architecture apt cannot see the :arm64/:armhf packages.
added=no
if ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
  say "adding the $deb_arch architecture to dpkg"
  dpkg --add-architecture "$deb_arch"
  added=yes
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ] || [ "$added" = yes ]; then
  say "apt-get update"
  apt-get update -qq >/dev/null || fail "apt-get update failed" \
    "check /etc/apt/sources.list and that the Debian mirror is reachable"
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || fail "apt-get install failed for: ${missing[*]}" \
    "run the apt-get install by hand to see why (a held or conflicting package?)"
fi

# The Debian registry package starts its own service; the smoke test starts a private one.
systemctl disable --now docker-registry >/dev/null 2>&1 || service docker-registry stop >/dev/null 2>&1 || true

# binfmt_misc: without systemd (containers, CI) nothing mounts it or loads qemu's entries.
binfmt=/proc/sys/fs/binfmt_misc
qemu=$(case "$deb_arch" in arm64) echo qemu-aarch64 ;; armhf) echo qemu-arm ;; esac)
if [ ! -e "$binfmt/register" ]; then
  say "mounting binfmt_misc"
  mount -t binfmt_misc binfmt_misc "$binfmt" || fail "cannot mount binfmt_misc on $binfmt" \
    "a container needs --privileged for this; or build with --no-smoke and test on a board"
fi
if ! grep -qx enabled "$binfmt/$qemu" 2>/dev/null; then
  say "enabling $qemu in binfmt_misc"
  update-binfmts --enable "$qemu" || fail "update-binfmts --enable $qemu failed" \
    "check update-binfmts --display $qemu (package qemu-user-static)"
fi
