#!/usr/bin/env bash
# Make burn's `cuda` backend build offline, from Debian's LLVM.
#
# cubecl-cuda 0.11 links LLVM (its PTX code generator) through tracel-llvm-bundler, whose
# build script downloads a prebuilt LLVM from outside the package registries unless its
# install folder already holds the marker `.tracel-llvm-installed`. This script fills that
# folder from Debian's llvm-22 packages instead:
#   $XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed   the marker
#   $XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4/bin/llvm-config          forwards to Debian's
# The forwarder rewrites absolute library paths in llvm-config's output (Debian prints
# /usr/lib/x86_64-linux-gnu/libz3.so among the system libraries) into `-lNAME`: the bundler
# keeps only a path's file stem, which would ask the linker for "liblibz3".
#
# Idempotent; run once per machine before `cargo build --features cuda`. Needs root for apt.
set -euo pipefail
LLVM_MAJOR=22
BUNDLE=tracel-llvm-23.1.0-4   # tracel-llvm-bundler's TRACEL_LLVM_FULL_VERSION (Cargo.lock pins it)

pkgs=(llvm-$LLVM_MAJOR llvm-$LLVM_MAJOR-dev libpolly-$LLVM_MAJOR-dev libzstd-dev zlib1g-dev libxml2-dev libz3-dev)
arch=$(dpkg --print-architecture)
missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p:$arch" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

real=/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-config
test -x "$real" || { echo "setup-cuda-build: $real not found after installing llvm-$LLVM_MAJOR" >&2; exit 1; }
dir="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/$BUNDLE"
mkdir -p "$dir/bin"
cat >"$dir/bin/llvm-config.tmp" <<WRAP
#!/bin/sh
# Written by avsc's host/gpu/setup-cuda-build.sh: Debian's LLVM $LLVM_MAJOR for cubecl-llvm.
exec $real "\$@" | sed -E 's#(^| )/[^ ]*/lib([A-Za-z0-9_+-]+)\.so(\.[0-9.]+)?#\1-l\2#g'
WRAP
chmod +x "$dir/bin/llvm-config.tmp"
mv "$dir/bin/llvm-config.tmp" "$dir/bin/llvm-config"
touch "$dir/.tracel-llvm-installed"
echo "setup-cuda-build: $dir -> $($dir/bin/llvm-config --version) ($real)"
