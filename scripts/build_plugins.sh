#!/usr/bin/env bash
# Build the plugin libraries into build/plugins: the CPU launchers (libedgeseg_cpu.so) always; the
# ONNX Runtime custom ops (libedgeseg_ort.so) where ONNX Runtime's headers can be fetched; the
# TensorRT plugins with their CUDA launchers (libedgeseg_trt.so) and their host tests where nvcc is
# found. TensorRT 10.x headers come from PyPI (kernel-lens, --no-deps) into build/deps unless
# TENSORRT_INCLUDE_DIR names a TensorRT install (Jetson: /usr/include/aarch64-linux-gnu).
# GPU targets: EDGESEG_CUDA_ARCHS (CMake's list: "87", "90", "80;86", "native"; CUDA_ARCHS is the old name).
# Default x86_64: SASS for sm_75 (T4), sm_80/86 (Ampere), sm_89 (Ada), sm_90 (Hopper) + sm_90 PTX, which the
# driver compiles for newer GPUs; aarch64: sm_87 (Orin, JetPack 6). `edgeseg check` reads the library's images.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
deps=build/deps
mkdir -p "$deps" build/plugins
py=${PYTHON:-.venv/bin/python}
trt_inc=${TENSORRT_INCLUDE_DIR:-}
nvcc_bin=$(command -v nvcc || true)
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [ -n "$nvcc_bin" ] && [ -z "$trt_inc" ]; then
  trt_inc=$deps/kernel_lens/include/tensorrt
  if [ ! -f "$trt_inc/NvInferRuntime.h" ]; then
    echo "[build_plugins] fetching TensorRT 10.x headers (PyPI kernel-lens)"
    "$py" -m pip download -q --no-deps kernel-lens==2.0.1 -d "$deps/wheel" 2>&1 | grep -v WARNING || true
    "$py" -m zipfile -e "$deps"/wheel/kernel_lens-2.0.1-*.whl "$deps"
  fi
fi
ort_inc=${ORT_INCLUDE_DIR:-$deps/onnxruntime/usr/include/onnxruntime}
if [ ! -f "$ort_inc/onnxruntime_lite_custom_op.h" ]; then
  # Not in the pip wheel, not in bookworm: Debian trixie's libonnxruntime-dev (API 21; pip ORT loads it).
  echo "[build_plugins] fetching ONNX Runtime headers (Debian trixie libonnxruntime-dev)"
  apt_dir=$(readlink -f "$deps")/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
  apt_opts=(-o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" -o APT::Sandbox::User=root)
  if apt-get "${apt_opts[@]}" update >"$apt_dir/log" 2>&1 \
     && (cd "$apt_dir" && apt-get "${apt_opts[@]}" download libonnxruntime-dev >>"$apt_dir/log" 2>&1); then
    dpkg-deb -x "$apt_dir"/libonnxruntime-dev_*.deb "$deps/onnxruntime"
  else
    echo "[build_plugins] could not fetch libonnxruntime-dev (see $apt_dir/log): no ONNX Runtime custom ops"
  fi
fi
args=(-DCMAKE_BUILD_TYPE=Release)
[ -f "$ort_inc/onnxruntime_lite_custom_op.h" ] && args+=(-DORT_INCLUDE_DIR="$(readlink -f "$ort_inc")")
if [ -n "$nvcc_bin" ]; then
  args+=(-DCMAKE_CUDA_COMPILER="$nvcc_bin" -DTENSORRT_INCLUDE_DIR="$(readlink -f "$trt_inc")")
  # Always passed, so a build/cmake configured before keeps no stale list (nvcc 13's sm_75-only default, once).
  # sm_87 only on aarch64: an x86_64 library never runs on an Orin.
  default_archs="75-real;80-real;86-real;89-real;90"
  [ "$(uname -m)" = aarch64 ] && default_archs=87
  archs=${EDGESEG_CUDA_ARCHS:-${CUDA_ARCHS:-$default_archs}}
  args+=(-DCMAKE_CUDA_ARCHITECTURES="$(echo "$archs" | tr ' ,' ';;')")
  echo "[build_plugins] CUDA architectures: $archs"
else
  echo "[build_plugins] no nvcc: building the CPU launchers only"
  args+=(-DEDGESEG_CUDA=OFF)
fi
cmake -S plugins -B build/cmake "${args[@]}" >build/cmake.log 2>&1 || { cat build/cmake.log; exit 1; }
cmake --build build/cmake -j "$(nproc)" >>build/cmake.log 2>&1 || { tail -40 build/cmake.log; exit 1; }
for lib in libedgeseg_cpu.so libedgeseg_ort.so libedgeseg_trt.so plugin_host_tests; do
  [ -f "build/cmake/$lib" ] && cp "build/cmake/$lib" "build/plugins/$lib.tmp" && mv "build/plugins/$lib.tmp" "build/plugins/$lib"
done
# the hashes edgeseg pins the libraries by (an engine's sidecar names a library; only these hashes are trusted)
(cd build/plugins && sha256sum -- *.so >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "[build_plugins] built: $(ls build/plugins | tr '\n' ' ')"
