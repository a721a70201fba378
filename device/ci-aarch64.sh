#!/usr/bin/env bash
# Build avsc-device for aarch64-unknown-linux-gnu (Jetson on JetPack 6, Raspberry Pi 4/5) and
# run its tests under qemu-aarch64-static. Called from .ci/run; runs on Debian/Ubuntu x86_64
# as root (or with sudo for apt). Everything it needs is installed here:
#   - rustup's aarch64 standard library,
#   - Debian's aarch64 cross compiler (linker, and C/C++ for openh264 and alsa-sys),
#   - the arm64 ALSA development package (alsa-sys links libasound; pkg-config finds it)
#     and the arm64 C++ runtime (openh264 is C++) for running the tests,
#   - qemu-user-static to run the test binaries (arm64 loader and libraries from the
#     multiarch packages, /lib/ld-linux-aarch64.so.1 and /usr/lib/aarch64-linux-gnu).
#
# The binary this builds links against the build machine's glibc (Debian 12: 2.36), newer
# than JetPack 6's 2.35: it is for the tests. Deployable binaries come from `cross`
# (../cross.toml: Ubuntu 20.04 image, glibc 2.31, runs on both boards).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo "== aarch64: $* ($(( $(date +%s) - start ))s)"; }

TARGET=aarch64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/avsc-target}"
export CARGO_TERM_COLOR=never

need=()
dpkg --print-foreign-architectures | grep -qx arm64 || { step "dpkg --add-architecture arm64"; dpkg --add-architecture arm64; }
for p in g++-aarch64-linux-gnu libc6-dev-arm64-cross libasound2-dev:arm64 libstdc++6:arm64 qemu-user-static libclang-dev pkg-config; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  step "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
rustup target list --installed | grep -qx "$TARGET" || { step "rustup target add $TARGET"; rustup target add "$TARGET"; }

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# The arm64 loader and libraries come from the multiarch packages (libasound2-dev:arm64
# pulls libc6:arm64), so qemu needs no -L prefix.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
# Tests that spawn the device binary run it through qemu too (a container usually has no
# binfmt_misc handler for arm64 ELF files).
export AVSC_TEST_RUNNER=qemu-aarch64-static
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# alsa-sys: pkg-config for the target's libasound.
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_PATH_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig
export PKG_CONFIG_SYSROOT_DIR_aarch64_unknown_linux_gnu=/
# v4l2-sys (bindgen) passes --target itself; clang then finds the arm64 kernel and libc
# headers under /usr/include/aarch64-linux-gnu (linux-libc-dev:arm64, via libc6-dev:arm64).

# The test build includes the binary (the integration tests spawn it). The release binary
# (thin LTO: a second, slower build) only when asked: AVSC_AARCH64_RELEASE=1.
# The memory soak (400 windows of inference, ~30 s natively) would take over 10 minutes
# under qemu, the live-loop test runs a scripted minute 10x faster than real time, which
# emulation cannot keep up with, and the long-file test decodes 3 minutes of video twice;
# all three run natively in the workspace tests and are skipped here, as are the
# third-party recordings (a hundred files).
step "cargo test -p avsc-device --target $TARGET (qemu-aarch64-static)"
cargo test -p avsc-device --target "$TARGET" --locked -- \
  --skip windows_without_memory_growth --skip a_microphone_outage_and_a_camera_stall_keep_one_timeline \
  --skip a_long_recording_classifies_in_the_memory_of_a_short_one \
  --skip real_recordings_by_others --skip real_lossless_files

if [ "${AVSC_AARCH64_RELEASE:-0}" = 1 ]; then
  step "cargo build -p avsc-device --release --target $TARGET"
  cargo build -p avsc-device --release --target "$TARGET" --locked
fi

step "done"
