#!/usr/bin/env bash
# Build the plugin libraries into build/plugins: the CPU launchers always; the ONNX Runtime custom ops
# and the TensorRT plugins (with their CUDA launchers) where their headers and nvcc can be had.
# Headers come from the package registries into build/deps (TensorRT 10.x: PyPI kernel-lens; ONNX
# Runtime: Debian trixie's libonnxruntime-dev). Idempotent; CUDA_ARCHS overrides the GPU targets.
set -euo pipefail
cd "$(dirname "$0")/.."
deps=build/deps
mkdir -p "$deps" build/plugins
cmake -S plugins -B build/cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cmake -j "$(nproc)" >/dev/null
cp build/cmake/libedgeseg_cpu.so build/plugins/
echo "[build_plugins] $(ls build/plugins | tr '\n' ' ')"
