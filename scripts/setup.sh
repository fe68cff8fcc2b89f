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
  echo "[setup] installing the offline data packages (LiTS CT volume, stardist nuclei image)"
  "$py" -m pip install -q --no-deps liver-ct-segmentation-package==1.6.0 stardist==0.9.2
  rm -f .venv/.setup-*
  touch "$stamp"
fi
