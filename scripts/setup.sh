#!/usr/bin/env bash
# Idempotent set-up: .venv with pinned torch/torchvision, edgeseg (editable, with test tools) and the
# two offline data packages (installed --no-deps: only their data files are used).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
# Re-run the installs only when what they depend on changed.
stamp=".venv/.setup-$(cat pyproject.toml scripts/setup.sh scripts/constraints.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  py=.venv/bin/python
  "$py" -m pip install -q --upgrade pip
  case "$(uname -m)" in
    x86_64) torch_pins="torch==2.14.1 torchvision==0.29.1" ;;
    aarch64) torch_pins="torch==2.9.1 torchvision==0.24.1" ;;  # Jetson / ARM: see ENVIRONMENT.md
    *) torch_pins="torch torchvision" ;;
  esac
  echo "[setup] installing $torch_pins (a few minutes the first time)"
  "$py" -m pip install -q $torch_pins
  echo "[setup] installing edgeseg and its dependencies"
  "$py" -m pip install -q -c scripts/constraints.txt -e ".[dev]"
  # optional: the dense CRF of eval/infer --crf compiles C++; where it does not, those verbs say so and its tests skip
  "$py" -m pip install -q -c scripts/constraints.txt "pydensecrf2==1.1" \
    || echo "[setup] pydensecrf2 did not install: 'eval/infer --crf' are unavailable, tests/test_crf.py skips those tests"
  # edgeseg quantize --target tensorrt: NVIDIA ModelOpt's ONNX PTQ places Q/DQ as TensorRT fuses them. Not its [onnx]
  # extra, which pins onnx 1.21 and pulls onnxruntime-gpu beside onnxruntime: only what its ONNX quantizer imports.
  echo "[setup] installing NVIDIA ModelOpt (TensorRT Q/DQ placement)"
  "$py" -m pip install -q -c scripts/constraints.txt nvidia-modelopt==0.47.0 onnxslim==0.1.98 lief==1.0.0
  echo "[setup] installing the offline data packages (LiTS CT volume, stardist nuclei image)"
  "$py" -m pip install -q --no-deps liver-ct-segmentation-package==1.6.0 stardist==0.9.2
  # edgeseg serve: Triton's server binary (nvidia-pytriton) and client. Both --no-deps: their metadata pins NumPy < 2
  # and ml-dtypes <= 0.5.4, which only their unused parts need; their other dependencies install normally.
  echo "[setup] installing Triton Inference Server and its client (edgeseg serve)"
  "$py" -m pip install -q --no-deps nvidia-pytriton==0.7.0 tritonclient==2.73.0
  "$py" -m pip install -q -c scripts/constraints.txt -e ".[serve-deps]"
  rm -f .venv/.setup-*
  touch "$stamp"
fi
