#!/usr/bin/env bash
# Live segmentation on a Jetson: a CSI camera (nvarguscamerasrc, the ISP on the SoC) or a video file decoded by
# NVDEC (nvv4l2decoder), through OpenCV's GStreamer backend, into 'edgeseg infer' (decode, TensorRT, drawing and
# encoding as pipelined stages; an engine's TensorRT session keeps two frames in flight on CUDA streams).
# Not run here: written against JetPack 6 (L4T r36) GStreamer elements, checked with bash -n and shellcheck.
#
#   scripts/jetson/stream.sh MODEL [OUT.mp4] [-- EXTRA 'edgeseg infer' ARGUMENTS]
#   SENSOR=0 WIDTH=1280 HEIGHT=720 FPS=30 FLIP=0      the CSI camera (FLIP: nvvidconv flip-method, 0-7)
#   FILE=in.mp4 CODEC=h264                             a file through NVDEC instead (h264 or h265), every frame
#
# e.g. scripts/jetson/stream.sh unet.engine out.mp4 -- --labels-dir labels/
#      FILE=street.mp4 scripts/jetson/stream.sh unet.engine street_seg.mp4
# The camera is a live source: the newest frame is kept, the rest counted as dropped (see the summary). The
# overlay video is encoded by PyAV's libx264 on the CPU (Orin Nano has no NVENC; the encode stage runs beside
# inference). Needs JetPack's OpenCV (built with GStreamer; the setup.sh venv sees it), not pip's opencv-python.
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "[jetson/stream] $*" >&2; exit 1; }

SENSOR=${SENSOR:-0}
WIDTH=${WIDTH:-1280}
HEIGHT=${HEIGHT:-720}
FPS=${FPS:-30}
FLIP=${FLIP:-0}
FILE=${FILE:-}
CODEC=${CODEC:-h264}
py=.venv/bin/python

[ $# -gt 0 ] && [ "$1" != "--" ] || die "name the model (.engine, .onnx or .pt)"
model=$1; shift
out=stream.mp4
if [ $# -gt 0 ] && [ "$1" != "--" ]; then out=$1; shift; fi
[ $# -gt 0 ] && shift
extra=("$@")

[ -f /etc/nv_tegra_release ] || die "not a Jetson (no /etc/nv_tegra_release): on other machines pass a file, URL or /dev/videoN to 'edgeseg infer'"
[ -x "$py" ] || die "no .venv: run scripts/jetson/setup.sh first"
"$py" -c 'import re, sys, cv2; sys.exit(0 if re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()) else 1)' \
  || die "the venv's OpenCV has no GStreamer: pip uninstall opencv-python opencv-python-headless; sudo apt install python3-opencv"

to_bgr="nvvidconv flip-method=$FLIP ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"
if [ -n "$FILE" ]; then
  [ -f "$FILE" ] || die "no such file: $FILE"
  case "$CODEC" in h264|h265) ;; *) die "CODEC must be h264 or h265" ;; esac
  gst-inspect-1.0 nvv4l2decoder >/dev/null 2>&1 || die "no nvv4l2decoder (JetPack's GStreamer plugins)"
  demux=qtdemux
  case "$FILE" in *.mkv|*.webm) demux=matroskademux ;; *.ts) demux=tsdemux ;; esac
  pipeline="filesrc location=$FILE ! $demux ! ${CODEC}parse ! nvv4l2decoder ! $to_bgr ! appsink sync=false"
  live=--no-live   # a file: every frame, the decoder waits for inference
else
  gst-inspect-1.0 nvarguscamerasrc >/dev/null 2>&1 || die "no nvarguscamerasrc (JetPack's GStreamer plugins, a CSI camera)"
  pipeline="nvarguscamerasrc sensor-id=$SENSOR ! video/x-raw(memory:NVMM),width=$WIDTH,height=$HEIGHT,framerate=$FPS/1,format=NV12 ! $to_bgr ! appsink drop=true max-buffers=1 sync=false"
  live=--live
fi
echo "[jetson/stream] $pipeline"
exec .venv/bin/edgeseg infer "$model" "$pipeline" --out "$out" "$live" "${extra[@]}"
