#!/usr/bin/env bash
# The main job on the embedded default (ONNX Runtime on the CPU): train a U-Net on real LiTS CT slices,
# export, quantize to INT8, evaluate and time PyTorch FP32 / ORT FP32 / ORT INT8, write
# runs/quickstart/report.{md,json,png}. Extra arguments go to `edgeseg quickstart` (e.g. --minutes 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE
exec .venv/bin/edgeseg quickstart "$@"
