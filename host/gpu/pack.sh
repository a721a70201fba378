#!/usr/bin/env bash
# Build, on a CPU machine, everything host/gpu/bench.sh runs on a GPU machine that has only the
# NVIDIA driver, into one folder:
#
#   host/gpu/pack.sh DIR        then, there: host/gpu/bench.sh DIR OUT
#
# avsc-host (`--features cuda,wgpu`) and, unless FUSION=0, avsc-host-fusion (`+fusion`),
# stripped and xz-compressed (about 31 MB each: two fit a 64-MiB transfer); Debian's Vulkan
# loader and GL dispatch libraries as .debs. Release builds skip LTO here (a 2-core build of the
# GPU stack takes about 18 minutes cold; the second variant about 15 more).
set -euo pipefail
dir=${1:?usage: host/gpu/pack.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bash "$here/setup-cuda-build.sh"
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=0
target=${CARGO_TARGET_DIR:-$root/target}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pack() { # features, name
  (cd "$root" && cargo build --release --locked -p avsc-host --features "$1")
  strip -o "$dir/$2" "$target/release/avsc-host"
  xz -9e -T1 -f "$dir/$2"
}
pack cuda,wgpu avsc-host
[ "${FUSION:-1}" = 0 ] || pack cuda,wgpu,fusion avsc-host-fusion
(cd "$dir" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>/dev/null)
ls -l "$dir"
