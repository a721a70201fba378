#!/usr/bin/env bash
# The GPU benchmark of issue #14, for a machine that has only the NVIDIA driver (and, for the
# PyTorch reference, python3 with torch + torchvision). It builds nothing: it runs release
# binaries built elsewhere.
#
#   host/gpu/bench.sh BIN_DIR OUT_DIR
#
# BIN_DIR: `avsc-host` built with `--features cuda,wgpu` (host/gpu/README.md), optionally
# `avsc-host-fusion` (the same with `fusion` too), and the `*.deb` of Debian's Vulkan loader and
# GL dispatch libraries (`apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1
# libglx0 libgles2`), unpacked first. The CPU/GPU parity check runs as `avsc-host bench --what
# parity`.
#
# The first use of each kernel shape compiles and autotunes its candidate kernels: on an H200
# (2026-12-04) the tiny audio network's first step had not finished after 120 s (185 NVRTC
# compilations in 80 s, 108 of them matmul candidates). The tuning results and compiled kernels
# persist (burn's `persistence`, under ./target/environment or ~/.cache/cubecl), so each network
# is first run once untimed with WARM_TIMEOUT, then timed in a second process.
# OUT_DIR gets results.jsonl (one JSON line per measurement), log.txt and table.md.
# Each case has a time limit (CASE_TIMEOUT, default 120 s) and none starts after DEADLINE
# (default 450 s); a case that fails or times out is logged and the rest still run. Total: at
# most about DEADLINE + CASE_TIMEOUT seconds.
set -u
BIN=$(cd "$1" && pwd); OUT=$2
mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
LOG=$OUT/log.txt; RES=$OUT/results.jsonl
: >"$RES"
T=${CASE_TIMEOUT:-120}
NETS=${NETS:-"audio inception-v3 convnext-tiny"}
DEVICES=${DEVICES:-"cuda wgpu"}
log() { echo "== $* ($(date +%T))" | tee -a "$LOG"; }

# Binaries packed by host/gpu/pack.sh come xz-compressed (python3's lzma: xz may be missing).
for f in "$BIN"/*.xz; do
  [ -e "$f" ] || continue
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[1][:-3], "wb"), 1 << 24)' "$f" &&
    chmod +x "${f%.xz}" && rm "$f"
done
# The Vulkan loader and the GL vendor-neutral libraries the NVIDIA ICD (libGLX_nvidia) links:
# with libvulkan1 alone wgpu found no adapter on an H200 (2026-12-04).
for f in "$BIN"/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
nv=/usr/local/nvidia/share
[ -e $nv/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ] &&
  export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=$nv/glvnd/egl_vendor.d/10_nvidia.json
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
# NVRTC and the CUDA headers for cubecl-cuda's C++ code generator: the toolkit if there is one,
# else PyPI's nvidia-cuda-nvrtc wheel that PyTorch brings.
if [ -d /usr/local/cuda/lib64 ]; then
  export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
else
  wheels=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__file__))' 2>/dev/null || true)
  for f in $( [ -n "$wheels" ] && find "$wheels" -name 'libnvrtc.so*' 2>/dev/null | head -n 1); do
    export LD_LIBRARY_PATH="$(dirname "$f"):${LD_LIBRARY_PATH:-}"
  done
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$LOG"

DEADLINE=${DEADLINE:-450}   # seconds: cases that would start later are skipped, the table still printed
run() { # label, command...
  local label=$1; shift
  if [ $SECONDS -ge "$DEADLINE" ]; then
    echo "{\"label\": \"$label\", \"seconds\": 0, \"failed\": \"skipped: past the ${DEADLINE}-s deadline\"}" >>"$RES"
    return
  fi
  log "$label"
  local t0=$SECONDS
  timeout -k 5 "${T}" "$@" >"$OUT/case.out" 2>>"$LOG"
  local rc=$?
  cat "$OUT/case.out" >>"$LOG"
  if [ $rc -eq 0 ]; then
    echo "{\"label\": \"$label\", \"seconds\": $((SECONDS - t0)), \"result\": $(tail -n 1 "$OUT/case.out")}" >>"$RES"
  else
    echo "{\"label\": \"$label\", \"seconds\": $((SECONDS - t0)), \"failed\": $rc}" >>"$RES"
    echo "   exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
  fi
}
TORCH="python3 $HERE/../benches/reference_torch_step.py --device cuda --size paper"
HOST=$BIN/avsc-host; FUSION=$BIN/avsc-host-fusion

# cubecl-cuda finds NVRTC's headers through CUDA_PATH (default /usr/local/cuda): check once with
# a tiny network, and try the headers of PyPI's nvidia wheels if the default fails.
if echo " $DEVICES " | grep -q " cuda "; then
  log "cuda preflight (CUDA_PATH=${CUDA_PATH:-default})"
  if ! timeout 120 "$HOST" bench --device cuda --size tiny --batch 2 --warmup 1 --runs 1 >>"$LOG" 2>&1; then
    wheels=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__file__))' 2>/dev/null || true)
    for d in $( [ -n "$wheels" ] && find "$wheels" -maxdepth 3 -name include -type d 2>/dev/null); do
      [ -e "$d/cuda_fp16.h" ] || continue
      export CUDA_PATH=$(dirname "$d")
      log "cuda preflight with CUDA_PATH=$CUDA_PATH"
      timeout 120 "$HOST" bench --device cuda --size tiny --batch 2 --warmup 1 --runs 1 >>"$LOG" 2>&1 && break
      unset CUDA_PATH
    done
  fi
fi

# In order of what matters most, so that the deadline cuts the least useful cases.
# PyTorch first: it is the reference, and it warms the GPU's clocks.
for net in $NETS; do run "torch step $net" $TORCH --net "$net" --runs 20; done
WARM=${WARM_TIMEOUT:-300}
steps() { # binary tag, device: a cold process fills the caches, a second one is timed
  for net in $NETS; do
    T=$WARM run "$1 cold step $2 $net" "$BIN/$1" bench --device "$2" --net "$net" --warmup 1 --runs 1
    run "$1 step $2 $net" "$BIN/$1" bench --device "$2" --net "$net" --warmup 3 --runs 10
  done
}
parity() { # binary tag, device
  run "$1 parity $2" "$BIN/$1" bench --what parity --device "$2"
}
for dev in $DEVICES; do
  steps avsc-host "$dev"
  parity avsc-host "$dev"
  if [ "$dev" = cuda ] && [ -x "$FUSION" ]; then steps avsc-host-fusion cuda; fi
done
for net in $NETS; do
  run "torch forward $net" $TORCH --net "$net" --what forward --batch 64 --runs 20
  for dev in $DEVICES; do
    run "avsc-host forward $dev $net" "$HOST" bench --what forward --device "$dev" --net "$net" --batch 64 --warmup 3 --runs 10
  done
done
[ -x "$FUSION" ] && parity avsc-host-fusion cuda
for net in $NETS; do run "torch step $net cudnn-benchmark" $TORCH --net "$net" --runs 20 --cudnn-benchmark; done

python3 "$HERE/summarize.py" "$RES" | tee "$OUT/table.md"
