#!/usr/bin/env bash
# On a machine with CUDA and PyTorch (no TensorRT needed): build the plugins' CUDA launchers into
# build/plugins/libedgeseg_cuda.so, check them against torchvision's CUDA ops and the PyTorch references
# in FP32 and FP16 (the panoptic head against the CPU launcher, exactly), time them side by side, write
# OUT_DIR/ops_cuda_<gpu>.{json,md}; then the bench's CUDA tests (torch-cuda variants, --profile).
# PYTHON picks the interpreter (default: .venv/bin/python, else python3); CUDA_ARCHS the GPU target.
# One device run: scripts/gpu_check.sh OUT_DIR [ops_bench args]. Fetches nothing; every step is timed and its
# status recorded, and OUT_DIR gets gpu_check.json + gpu_check.md (and ops_cuda_<gpu>.{json,md}) even when a
# step fails, so one run on a lent GPU always brings its evidence back. GPU_CHECK_BUDGET_S caps it (480 s).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/gpu_check.sh OUT_DIR [ops_bench args]"; exit 2; }
out=$1; shift
mkdir -p "$out"
steps="$out/steps.tsv"; : > "$steps"
deadline=$(( $(date +%s) + ${GPU_CHECK_BUDGET_S:-480} ))
step() {  # step NAME CMD...: runs CMD within what is left of the budget, records name, status, seconds
  local name=$1 t0 rc left; shift
  t0=$(date +%s); left=$(( deadline - t0 ))
  if [ "$left" -le 5 ]; then printf '%s\tskipped (budget)\t0\n' "$name" >> "$steps"; return 0; fi
  set +e; timeout "$left" "$@" 2>&1 | tee "$out/$name.log"; rc=${PIPESTATUS[0]}; set -e
  printf '%s\t%s\t%s\n' "$name" "$([ "$rc" = 0 ] && echo ok || echo "failed ($rc)")" "$(( $(date +%s) - t0 ))" >> "$steps"
}
py=${PYTHON:-}
[ -z "$py" ] && { [ -x .venv/bin/python ] && py=.venv/bin/python || py=python3; }
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || { echo "gpu_check: no CUDA device here"; exit 2; }
arch=${CUDA_ARCHS:-$("$py" -c "import torch; print(''.join(map(str, torch.cuda.get_device_capability())))")}
mkdir -p build/plugins
step build_cuda nvcc -std=c++17 -O3 -shared -Xcompiler -fPIC -gencode "arch=compute_$arch,code=sm_$arch" -Iplugins -Iplugins/include \
  plugins/cuda/capi.cu plugins/roi_align/roi_align.cu plugins/deform_conv/deform_conv.cu plugins/panoptic_paste/paste.cu \
  -o build/plugins/libedgeseg_cuda.so
# Launch-geometry checks the host cannot make: DCNv2 with N·groups above gridDim.z's 65,535 must launch
# (the kernel loops over the rest) and match torchvision on every image, the last ones included.
step dcnv2_grid "$py" - <<'PY'
import ctypes, torch, torchvision
lib = ctypes.CDLL("build/plugins/libedgeseg_cuda.so")
n = 70000
x = torch.randn(n, 2, 3, 3, device="cuda"); w = torch.randn(4, 1, 1, 1, device="cuda")
off = torch.randn(n, 2, 3, 3, device="cuda") * 0.5; b = torch.randn(4, device="cuda")
y = torch.empty(n, 4, 3, 3, device="cuda")
P = ctypes.c_void_p
rc = lib.es_cuda_deform_conv2d(0, P(x.data_ptr()), n, 2, 3, 3, P(w.data_ptr()), 4, 1, 1, P(off.data_ptr()), None,
    P(b.data_ptr()), 1, 1, 0, 0, 1, 1, 2, 1, 3, 3, P(y.data_ptr()), None)
torch.cuda.synchronize()
ref = torchvision.ops.deform_conv2d(x, off, w, b)
assert rc == 0, f"DCNv2 launch with N*groups = {2 * n} failed: cudaError {rc}"
err = (y - ref).abs().max().item()
assert err < 1e-4, f"DCNv2 with N*groups = {2 * n}: max error {err}"
print(f"gpu_check: DCNv2 grid over 65,535 (N*groups = {2 * n}) ok, max error {err:.2e}")
PY
# The panoptic head's many-block launcher against the CPU launcher (same math core): identical ids and tables
# on a 1024² image, 5,000 instances, 6,000 stuff classes, no instances, a 1×1 image.
# (libedgeseg_cpu.so comes with the run: carry build/plugins; building it here could fetch ONNX Runtime's headers)
[ -f build/plugins/libedgeseg_cpu.so ] || echo "gpu_check: build/plugins/libedgeseg_cpu.so not carried" > "$out/panoptic_vs_cpu.log"
[ -f build/plugins/libedgeseg_cpu.so ] && PYTHONPATH=.:benchmarks${PYTHONPATH:+:$PYTHONPATH} step panoptic_vs_cpu "$py" -c "
import ctypes, gpu_ops
for note in gpu_ops.check_panoptic(ctypes.CDLL('build/plugins/libedgeseg_cuda.so')):
    print('gpu_check: ' + note)"
PYTHONPATH=.:benchmarks${PYTHONPATH:+:$PYTHONPATH} step ops_bench "$py" benchmarks/ops_bench.py --device cuda \
  --cuda-lib build/plugins/libedgeseg_cuda.so --warmup 5 --repeats 50 --out "$out" "$@"
# PyTorch on CUDA as bench variants (torch-cuda fp32/fp16, torch-cuda-compile) and bench --profile; the TensorRT
# per-layer profile where full TensorRT and pycuda are installed (its test skips otherwise, saying why).
step cuda_tests "$py" -m pytest -q tests/test_bench.py tests/test_tensorrt_session.py -k "cuda or fp16 or profile"
# The evidence: every step's status and time, the machine, as JSON and markdown (scripts/gpu_check_report.py)
"$py" scripts/gpu_check_report.py "$out"
! grep -q "failed" "$steps"
