#!/usr/bin/env bash
# One device run: scripts/gpu_check.sh OUT_DIR
# On a GPU machine with torch (CUDA), torchvision and nvcc (no TensorRT; nothing is fetched): builds the CPU
# launcher (g++) and the CUDA launchers (nvcc, for this device's own architecture) from the tree's sources into
# build/gpu_check, runs every kernel against the CPU launcher (the hostile cases of the CPU tests included: the
# checked CUDA entry points must refuse or answer exactly as the CPU does), torchvision's CUDA ops and the PyTorch
# references (FP32, FP16), the panoptic launcher against the CPU launcher, times each kernel against torchvision
# and its memory-bound estimate, and writes exactly OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md. A failing
# step is recorded with its log's tail and the rest still runs. Needs no carried build output.
# GPU_CHECK_BUDGET_S caps the steps (default 450 s, so the whole run stays under 8 minutes); PYTHON picks the
# interpreter (default: .venv/bin/python where it has torch, else python3); GPU_CHECK_ARCH overrides the
# architecture (e.g. 90). Exit: 0 passed, 1 a check failed, 2 usage or no CUDA device (one line, nothing written).
set -uo pipefail
usage="usage: scripts/gpu_check.sh OUT_DIR"
case "${1:-}" in -h | --help) echo "$usage"; exit 0 ;; esac
[ $# -eq 1 ] && [ -n "$1" ] || { echo "$usage" >&2; exit 2; }
[ -e "$1" ] && [ ! -d "$1" ] && { echo "gpu_check: $1 is not a folder" >&2; exit 2; }
out=$(realpath -m -- "$1")  # the caller's path, before the cd
cd "$(dirname "$0")/.." || exit 2

probe() { "$1" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() and torch.cuda.device_count() else 3)" 2>/dev/null; }
py=${PYTHON:-.venv/bin/python}
probe "$py"; rc=$?
if [ -z "${PYTHON:-}" ] && [ "$rc" != 0 ] && [ "$rc" != 3 ]; then py=python3; probe "$py"; rc=$?; fi  # no torch in .venv
case $rc in
  0) ;;
  3) echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing checked, nothing written" >&2; exit 2 ;;
  *) echo "gpu_check: $py cannot import torch; nothing checked, nothing written (set PYTHON)" >&2; exit 2 ;;
esac

work=build/gpu_check
rm -rf "$work" && mkdir -p "$work" "$out"
steps="$work/steps.tsv"; : >"$steps"
deadline=$(($(date +%s) + ${GPU_CHECK_BUDGET_S:-450}))
step() { # step NAME CMD...: CMD within what is left of the budget; records name, status, seconds; log in WORK
  local name=$1 t0 rc left; shift
  t0=$(date +%s); left=$((deadline - t0))
  if [ "$left" -le 5 ]; then printf '%s\tnot run (budget spent)\t0\n' "$name" >>"$steps"; return 0; fi
  timeout "$left" "$@" >"$work/$name.log" 2>&1; rc=$?
  tail -3 "$work/$name.log"
  printf '%s\t%s\t%s\n' "$name" "$([ "$rc" = 0 ] && echo ok || echo "failed ($rc)")" "$(($(date +%s) - t0))" >>"$steps"
  echo "gpu_check: $name: $(tail -1 "$steps" | cut -f2)"
}

# The device's own architecture (nvidia-smi says "9.0"; torch as the fallback).
arch=${GPU_CHECK_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')}
[[ "$arch" =~ ^[0-9]{2,3}$ ]] || arch=$("$py" -c "import torch; print('%d%d' % torch.cuda.get_device_capability())")
echo "$arch" >"$work/arch"
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)

step build_cpu "${CXX:-g++}" -std=c++17 -O2 -shared -fPIC -fopenmp -Iplugins/include -Iplugins/cpu \
  plugins/cpu/edgeseg_cpu.cpp -o "$work/libedgeseg_cpu.so"
# SASS and PTX for this device only: a one-architecture build is the quick one. Every launcher source in the
# tree goes in (plugins/cuda: the C ABIs, raw and checked; one folder per op).
step build_cuda "$nvcc_bin" -std=c++17 -O3 -shared -Xcompiler -fPIC -gencode "arch=compute_$arch,code=[sm_$arch,compute_$arch]" \
  -Iplugins -Iplugins/include plugins/cuda/*.cu plugins/roi_align/*.cu plugins/deform_conv/*.cu plugins/panoptic_paste/*.cu \
  -o "$work/libedgeseg_cuda.so"
# Every kernel: hostile cases against the CPU launcher, references, panoptic, the DCNv2 grid, timings.
EDGESEG_PLUGIN_DIR="$work" PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" step kernels "$py" -m edgeseg.ops.cuda_check \
  --cuda-lib "$work/libedgeseg_cuda.so" --out "$work/kernels.json"
# PyTorch on CUDA as bench variants and bench --profile (the TensorRT tests skip without TensorRT, saying why);
# only where edgeseg.bench imports (it needs the ONNX tool chain, which the kernels above do not).
if "$py" -c "import pytest, edgeseg.bench" >/dev/null 2>&1; then
  step cuda_tests "$py" -m pytest -q -p no:cacheprovider tests/test_bench.py tests/test_tensorrt_session.py -k "cuda or fp16 or profile"
else
  printf 'cuda_tests\tskipped (pytest or edgeseg.bench does not import with %s)\t0\n' "$py" >>"$steps"
fi

# The evidence: plain Python, so it runs even when the torch stack is what failed.
"$py" scripts/gpu_check_report.py "$work" "$out" || python3 scripts/gpu_check_report.py "$work" "$out"
grep -q '"passed": true' "$out/gpu_check.json" 2>/dev/null
