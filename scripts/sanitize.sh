#!/usr/bin/env bash
# Sanitized run of the native layer: builds the CPU launchers, the ONNX Runtime custom ops and the fuzz
# driver with AddressSanitizer + UndefinedBehaviorSanitizer (cmake -DEDGESEG_SANITIZE=ON, CUDA off)
# into build/asan (build/cmake, the normal build, is untouched), then
#   1. fuzz_ops: the fixed regression cases, the corpus (plugins/fuzz/corpus) and random inputs for
#      FUZZ_SECONDS (default 60; the first argument overrides), tolerating only the failure classes
#      listed in plugins/fuzz/known_failures.txt;
#   2. pytest over the native op tests against the sanitized libraries: Python with the sanitizer
#      runtimes preloaded (LD_PRELOAD="libasan.so libubsan.so"; leak detection off, as Python and torch
#      keep memory at exit by design) and EDGESEG_PLUGIN_DIR=build/asan, so edgeseg.ops.native and the
#      ORT custom ops load the sanitized builds; the ORT fuzz test (tests/test_fuzz_native.py) runs
#      there for ORT_FUZZ_SECONDS (15);
#   3. with SANITIZE_HOST_TESTS=1, where nvcc and the TensorRT headers are found: the TensorRT plugins'
#      host tests (random and truncated payloads) built sanitized into build/asan-trt (CUDA launchers
#      for one architecture, not instrumented) and run (~1 minute).
# Any sanitizer report aborts the run with a non-zero status; a fuzz failure leaves its input in
# build/asan/artifacts/fuzz-crash.bin (replay: build/asan/fuzz_ops --no-fixed FILE).
# Environment: FUZZ_SECONDS, FUZZ_SEED (1), ORT_FUZZ_SECONDS (15), SANITIZE_PYTEST=0 (skip step 2),
# SANITIZE_HOST_TESTS=1 (step 3). Exit status 77: this compiler cannot build with the sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${FUZZ_SECONDS:-60}}
seed=${FUZZ_SEED:-1}
out=build/asan
py=${PYTHON:-.venv/bin/python}
cxx=${CXX:-c++}
mkdir -p "$out/artifacts"

# Can this compiler sanitize? (A compiler without libasan/libubsan: exit 77, the callers' "skip".)
probe=$out/probe
printf 'int main(){return 0;}\n' >"$probe.cpp"
if ! "$cxx" -fsanitize=address,undefined,float-cast-overflow "$probe.cpp" -o "$probe" >"$probe.log" 2>&1 || ! "$probe"; then
  echo "[sanitize] $cxx cannot build with -fsanitize=address,undefined ($(head -c 300 "$probe.log")): skipped"
  exit 77
fi
# Both runtimes are preloaded into Python: with libasan alone, the libubsan the .so files pull in at
# dlopen time ends the process (status 1, no message).
preload="$("$cxx" -print-file-name=libasan.so) $("$cxx" -print-file-name=libubsan.so)"

# -O2 with line tables only (-g1): reports keep file:line, the build takes half the time of -g.
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1" -DEDGESEG_SANITIZE=ON
      -DEDGESEG_CUDA=OFF -DEDGESEG_FUZZ=ON)
ort_inc=${ORT_INCLUDE_DIR:-build/deps/onnxruntime/usr/include/onnxruntime}
if [ -f "$ort_inc/onnxruntime_lite_custom_op.h" ]; then
  args+=(-DORT_INCLUDE_DIR="$(readlink -f "$ort_inc")")
else
  echo "[sanitize] no ONNX Runtime headers (scripts/build_plugins.sh fetches them): no sanitized libedgeseg_ort.so"
fi
t0=$SECONDS
cmake -S plugins -B "$out" "${args[@]}" >"$out/cmake.log" 2>&1 || { cat "$out/cmake.log"; exit 1; }
cmake --build "$out" -j "$(nproc)" >>"$out/cmake.log" 2>&1 || { tail -40 "$out/cmake.log"; exit 1; }
echo "[sanitize] built $(cd "$out" && ls libedgeseg_cpu.so libedgeseg_ort.so fuzz_ops 2>/dev/null | tr '\n' ' ')in $((SECONDS - t0)) s"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_WAIT_POLICY=PASSIVE

t0=$SECONDS
"$out/fuzz_ops" --seconds "$seconds" --seed "$seed" --artifacts "$out/artifacts" \
  --known plugins/fuzz/known_failures.txt plugins/fuzz/corpus
echo "[sanitize] fuzz_ops done in $((SECONDS - t0)) s"

if [ "${SANITIZE_PYTEST:-1}" != 0 ]; then
  t0=$SECONDS
  # torch, numpy and onnxruntime are not instrumented; with the runtime preloaded they run unchanged.
  LD_PRELOAD="$preload" EDGESEG_PLUGIN_DIR="$(readlink -f "$out")" EDGESEG_ORT_FUZZ_SECONDS="${ORT_FUZZ_SECONDS:-15}" \
    "$py" -m pytest -q -p no:cacheprovider tests/test_native_hostile.py tests/test_fuzz_native.py \
    tests/test_ops.py -k native
  echo "[sanitize] pytest under ASan done in $((SECONDS - t0)) s"
fi

if [ "${SANITIZE_HOST_TESTS:-0}" = 1 ]; then
  nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  trt_inc=${TENSORRT_INCLUDE_DIR:-build/deps/kernel_lens/include/tensorrt}
  if [ -x "$nvcc_bin" ] && [ -f "$trt_inc/NvInferRuntime.h" ]; then
    t0=$SECONDS
    # -O1: these run once, and instrumented TensorRT-header code compiles much faster than at -O2.
    cmake -S plugins -B "$out-trt" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" \
      "-DCMAKE_CUDA_FLAGS_RELWITHDEBINFO=-O2" -DEDGESEG_SANITIZE=ON -DEDGESEG_FUZZ=OFF \
      -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DTENSORRT_INCLUDE_DIR="$(readlink -f "$trt_inc")" \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-75-real}" >"$out-trt.log" 2>&1 || { cat "$out-trt.log"; exit 1; }
    cmake --build "$out-trt" -j "$(nproc)" --target plugin_host_tests >>"$out-trt.log" 2>&1 || { tail -40 "$out-trt.log"; exit 1; }
    "$out-trt/plugin_host_tests"
    echo "[sanitize] sanitized plugin_host_tests done in $((SECONDS - t0)) s"
  else
    echo "[sanitize] SANITIZE_HOST_TESTS=1 but no nvcc or TensorRT headers: host tests not run"
  fi
fi
echo "[sanitize] no sanitizer report"
