#!/usr/bin/env bash
# On a machine with CUDA and PyTorch (no TensorRT needed): build the plugins' CUDA launchers into
# build/plugins/libedgeseg_cuda.so, check them against torchvision's CUDA ops and the PyTorch references
# in FP32 and FP16, time them side by side, and write benchmarks/results/ops_cuda_<gpu>.{json,md}.
# PYTHON picks the interpreter (default: .venv/bin/python, else python3); CUDA_ARCHS the GPU target.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-}
[ -z "$py" ] && { [ -x .venv/bin/python ] && py=.venv/bin/python || py=python3; }
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || { echo "gpu_check: no CUDA device here"; exit 2; }
arch=${CUDA_ARCHS:-$("$py" -c "import torch; print(''.join(map(str, torch.cuda.get_device_capability())))")}
mkdir -p build/plugins
nvcc -std=c++17 -O3 -shared -Xcompiler -fPIC -gencode "arch=compute_$arch,code=sm_$arch" -Iplugins -Iplugins/include \
  plugins/cuda/capi.cu plugins/roi_align/roi_align.cu plugins/deform_conv/deform_conv.cu plugins/panoptic_paste/paste.cu \
  -o build/plugins/libedgeseg_cuda.so
PYTHONPATH=.:benchmarks${PYTHONPATH:+:$PYTHONPATH} "$py" benchmarks/ops_bench.py --device cuda \
  --cuda-lib build/plugins/libedgeseg_cuda.so --warmup 5 --repeats 50 "$@"
