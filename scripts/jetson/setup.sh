#!/usr/bin/env bash
# Jetson set-up (JetPack 6.x = L4T r36, Orin): .venv made with --system-site-packages so JetPack's TensorRT
# 10.3 Python bindings (python3-libnvinfer) stay visible, edgeseg (editable, without the [tensorrt] extra,
# which would pull a PyPI TensorRT over JetPack's) and pycuda built against JetPack's CUDA, then the plugin
# libraries built by scripts/build_plugins.sh with JetPack's nvcc for sm_87 and TensorRT's headers from
# /usr/include/aarch64-linux-gnu. Refuses on anything that is not a JetPack 6 Jetson. Idempotent.
# torch: a torch >= 2.9 already installed system-wide (e.g. NVIDIA's Jetson wheel) is used; otherwise pip
# installs PyPI's aarch64 wheel (CPU only: export and the torch:fp32 reference, not the timed TensorRT runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "[jetson/setup] $*" >&2; exit 1; }

[ "$(uname -m)" = aarch64 ] || die "not a Jetson ($(uname -m)); on this machine use scripts/setup.sh"
release_file=/etc/nv_tegra_release
[ -f "$release_file" ] || die "not a Jetson: no $release_file (written by Jetson Linux / JetPack)"
# First line, e.g.: "# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
l4t_major=$(sed -n 's/^# R\([0-9][0-9]*\) (release).*/\1/p' "$release_file" | head -n 1)
[ -n "$l4t_major" ] || die "cannot read the L4T release from the first line of $release_file"
if [ "$l4t_major" -lt 36 ]; then
  die "L4T r$l4t_major: edgeseg's TensorRT plugins need TensorRT 10 (JetPack 6, L4T r36 or later); flash JetPack 6.x"
fi
echo "[jetson/setup] $(head -n 1 "$release_file" | cut -c3-)"

cuda_bin=/usr/local/cuda/bin
[ -x "$cuda_bin/nvcc" ] || die "no $cuda_bin/nvcc: install JetPack's CUDA toolkit (sudo apt install nvidia-jetpack)"
export PATH="$cuda_bin:$PATH"
trt_inc=${TENSORRT_INCLUDE_DIR:-/usr/include/aarch64-linux-gnu}
[ -f "$trt_inc/NvInferRuntime.h" ] || die "no TensorRT headers in $trt_inc: sudo apt install libnvinfer-dev"
PYTHON=${PYTHON:-/usr/bin/python3}
"$PYTHON" -c 'import tensorrt' 2>/dev/null \
  || die "$PYTHON cannot import tensorrt: sudo apt install python3-libnvinfer (JetPack's TensorRT bindings)"

if [ ! -x .venv/bin/python ]; then
  echo "[jetson/setup] creating .venv (--system-site-packages: JetPack's tensorrt)"
  "$PYTHON" -m venv --system-site-packages .venv
fi
grep -q '^include-system-site-packages = true' .venv/pyvenv.cfg \
  || die ".venv was made without --system-site-packages (JetPack's tensorrt is invisible in it): remove .venv and re-run"
py=.venv/bin/python

stamp=".venv/.jetson-setup-$(cat pyproject.toml scripts/jetson/setup.sh scripts/constraints.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  "$py" -m pip install -q --upgrade pip
  echo "[jetson/setup] installing edgeseg and its dependencies"
  "$py" -m pip install -q -c scripts/constraints.txt -e . pytest
  echo "[jetson/setup] building pycuda against $cuda_bin (a few minutes the first time)"
  CUDA_ROOT=${cuda_bin%/bin} "$py" -m pip install -q "pycuda>=2024.1"
  rm -f .venv/.jetson-setup-*
  touch "$stamp"
fi
"$py" -c 'import tensorrt, pycuda.driver; print("[jetson/setup] tensorrt", tensorrt.__version__, "+ pycuda in .venv")'

echo "[jetson/setup] building the plugins for sm_87"
PYTHON="$py" TENSORRT_INCLUDE_DIR="$trt_inc" CUDA_ARCHS=87 scripts/build_plugins.sh
[ -f build/plugins/libedgeseg_trt.so ] || die "the TensorRT plugin library was not built: see build/cmake.log"
echo "[jetson/setup] done: scripts/jetson/bench.sh MODEL... benchmarks with power"
