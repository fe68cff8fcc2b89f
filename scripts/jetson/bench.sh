#!/usr/bin/env bash
# Benchmark on a Jetson with power: FPS and FPS per watt (input power from tegrastats: VDD_IN on Orin Nano/NX,
# the sum of the rails on AGX Orin). Records the nvpmodel power mode and the jetson_clocks state first (both
# are left as they are: set them yourself, e.g. sudo nvpmodel -m 0 && sudo jetson_clocks), then runs
# 'edgeseg bench' once per variant, so that the tegrastats samples taken while a variant is timed are its own,
# and merges the runs into one report: OUT/NAME.json, .md (a power table: img/s, mean and max W, img/s per W)
# and .png.
#
#   scripts/jetson/bench.sh [MODEL_OR_FILE...] [-- EXTRA 'edgeseg bench' ARGUMENTS]
#   VARIANTS=tensorrt:fp16,tensorrt:int8  INTERVAL_MS=100  REPEATS=200  WARMUP=10  OUT=runs/jetson  NAME=jetson
#
# e.g. scripts/jetson/bench.sh unet -- --size 512   or   scripts/jetson/bench.sh model.onnx -- --data DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "[jetson/bench] $*" >&2; exit 1; }

VARIANTS=${VARIANTS:-tensorrt:fp32,tensorrt:fp16,tensorrt:int8}
INTERVAL_MS=${INTERVAL_MS:-100}
REPEATS=${REPEATS:-200}
WARMUP=${WARMUP:-10}
OUT=${OUT:-runs/jetson}
NAME=${NAME:-jetson}
py=.venv/bin/python

models=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do models+=("$1"); shift; done
[ $# -gt 0 ] && shift
extra=("$@")
[ ${#models[@]} -gt 0 ] || die "name at least one model (zoo name, .onnx, .engine or .pt)"
command -v tegrastats >/dev/null || die "no tegrastats: not a Jetson (run scripts/jetson/setup.sh on one)"
[ -x "$py" ] || die "no .venv: run scripts/jetson/setup.sh first"
case "$INTERVAL_MS" in ''|*[!0-9]*) die "INTERVAL_MS must be a whole number of milliseconds" ;; esac

mkdir -p "$OUT/parts"
# nvpmodel -q works without root on JetPack 6; jetson_clocks --show reads debugfs and needs it (sudo -n: no
# password prompt in the middle of a run; without it the state is reported as not read).
# shellcheck disable=SC2024  # the output file is the user's, written without root on purpose
nvpmodel -q >"$OUT/$NAME.nvpmodel.txt" 2>&1 || sudo -n nvpmodel -q >"$OUT/$NAME.nvpmodel.txt" 2>&1 || true
# shellcheck disable=SC2024
sudo -n jetson_clocks --show >"$OUT/$NAME.clocks.txt" 2>&1 || jetson_clocks --show >"$OUT/$NAME.clocks.txt" 2>&1 || true
echo "[jetson/bench] $(grep -m1 'NV Power Mode' "$OUT/$NAME.nvpmodel.txt" || echo 'power mode not read')"

parts=()
IFS=, read -r -a variant_list <<<"$VARIANTS"
for v in "${variant_list[@]}"; do
  part="$NAME-${v//:/-}"
  echo "[jetson/bench] $v: ${models[*]} (tegrastats every ${INTERVAL_MS} ms while timed)"
  EDGESEG_POWER_INTERVAL_MS=$INTERVAL_MS "$py" -m edgeseg bench "${models[@]}" --variants "$v" \
    --warmup "$WARMUP" --repeats "$REPEATS" --out "$OUT/parts" --name "$part" ${extra[@]+"${extra[@]}"}
  parts+=("$OUT/parts/$part.json")
done
"$py" -m edgeseg.deploy.jetson merge "${parts[@]}" --out "$OUT" --name "$NAME" \
  --nvpmodel "$OUT/$NAME.nvpmodel.txt" --clocks "$OUT/$NAME.clocks.txt"
