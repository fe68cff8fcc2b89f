#!/usr/bin/env bash
# Type-check the code that needs a GPU and full TensorRT against the TensorRT Python API stubs
# (tensorrt-stubs, fetched --no-deps: its dependencies are download placeholders), so a call of a
# method TensorRT does not have fails here, on a machine without TensorRT.
set -euo pipefail
cd "$(dirname "$0")/.."
stubs=build/tensorrt-stubs
if [ ! -f "$stubs/.patched" ]; then
  rm -rf "$stubs" && mkdir -p "$stubs/wheel"
  .venv/bin/python -m pip download -q --no-deps tensorrt-stubs==10.13.0.35.1 -d "$stubs/wheel"
  .venv/bin/python -m zipfile -e "$stubs"/wheel/tensorrt_stubs-*.whl "$stubs/wheel/x"
  cp -r "$stubs/wheel/x/tensorrt" "$stubs/wheel/x/tensorrt_bindings" "$stubs/"
  # Two syntax errors in the stubs: parameters named `in`, and a non-default after defaults.
  sed -i -E 's/([(,] *)in: /\1in_: /g' "$stubs/tensorrt_bindings/tensorrt.pyi"
  sed -i 's/power: Weights = None, channel_axis: int)/power: Weights = None, channel_axis: int = 0)/' \
    "$stubs/tensorrt_bindings/tensorrt.pyi"
  touch "$stubs/.patched"
fi
MYPYPATH="$stubs" exec .venv/bin/mypy edgeseg/runtime/tensorrt_backend.py edgeseg/runtime/tensorrt/ "$@"
