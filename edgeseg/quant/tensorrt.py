"""INT8 Q/DQ placed the way TensorRT fuses it, by NVIDIA ModelOpt's ONNX PTQ (``nvidia-modelopt``).

What TensorRT wants from an explicit-INT8 graph, and what ModelOpt's placement gives:
- a Q/DQ pair on every Conv/ConvTranspose/Gemm/MatMul data input and on its weight (symmetric INT8, 8-bit full range,
  per-channel weights stored as INT8 behind a DequantizeLinear);
- residual Adds quantized on their non-conv branch only, so TensorRT fuses the Add into the preceding convolution;
- biases left FP32 (TensorRT's parser takes INT8/FP8/INT4 DequantizeLinear inputs only, never ONNX Runtime's INT32
  biases) and the output layer left in float;
- convolutions TensorRT has no INT8 kernel shape for (fewer than 16 channels, unless the channels are a multiple of 8
  and the kernel square) left in float: ModelOpt's rule, recorded in the metadata (``config.float_layers``).
Instance and panoptic graphs: only the network's Conv/ConvTranspose/Gemm/MatMul and its residual Adds are quantized;
box decoding, NMS, top-k and mask pasting stay FP32.
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgeseg.errors import EdgeSegError
from edgeseg.export import surgery
from edgeseg.export.metadata import ModelMeta, load_onnx, read_metadata

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# ModelOpt's INT8 calibrators: TensorRT's max (minmax) and entropy; it has no percentile calibrator for INT8.
_METHODS = {"minmax": "max", "entropy": "entropy"}


def modelopt_version() -> str | None:
    """The installed ModelOpt's version, or None where it is not installed (scripts/setup.sh installs it)."""
    from importlib import metadata

    try:
        return metadata.version("nvidia-modelopt")
    except metadata.PackageNotFoundError:
        return None


def _reader(input_name: str, batches: list[np.ndarray]):
    """A rewindable reader: ModelOpt reads the first batch for a trial run, then calibrates on all of them."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rewind()

        def get_next(self):
            return next(self._it, None)

        def get_first(self):
            return {input_name: batches[0]}

        def rewind(self):
            self._it = iter({input_name: b} for b in batches)

    return Reader()


def _postprocessing_nodes(proto: onnx.ModelProto) -> list[str]:
    """Instance/panoptic graphs: every node but the network's compute ops and residual Adds (an Add with a conv input),
    i.e. box decoding, NMS, top-k, paste and merge, which stay FP32 (an 8-bit box coordinate is off by pixels)."""
    producer = {o: n.op_type for n in proto.graph.node for o in n.output}
    keep = []
    for n in proto.graph.node:
        residual = n.op_type == "Add" and any(producer.get(i) in ("Conv", "ConvTranspose") for i in n.input)
        if n.op_type not in COMPUTE_OPS and not residual:
            keep.append(n.name)
    return keep


def quantize_tensorrt(src: str | Path, dst: str | Path, calibration: list[np.ndarray], method: str = "minmax", *,
                      check_data=None, force: bool = False, extra: dict | None = None) -> ModelMeta:
    """Quantize ``src`` (an FP32 edgeseg ONNX) to a Q/DQ INT8 ``dst`` placed for TensorRT, calibrated on
    ``calibration`` (normalised N×C×H×W float32 batches). Checked against ``src`` before it is written, as
    ``quantize_int8`` checks (``check_data``, ``force``). ``extra``: more ``config`` metadata (QAT marks itself)."""
    from edgeseg.quant import _calibration_error, _finish, _per_channel_opset, check_batches, check_quantizable
    from edgeseg.quant.fp16 import default_opset

    version = modelopt_version()
    if version is None:
        raise EdgeSegError("TensorRT Q/DQ placement needs NVIDIA ModelOpt (nvidia-modelopt), which is not installed",
                           "run scripts/setup.sh (or pip install nvidia-modelopt==0.47.0 onnxslim==0.1.98 lief==1.0.0)")
    if method not in _METHODS:
        raise EdgeSegError(f"calibration '{method}' is not available for the tensorrt target",
                           f"use one of: {', '.join(_METHODS)}")
    if not calibration:
        raise EdgeSegError("no calibration images", "give at least one image (--calib-images)")
    proto = load_onnx(src)
    meta = read_metadata(proto, src)
    check_quantizable(proto, meta, src)
    if default_opset(proto) < 13:  # per-channel DequantizeLinear needs opset 13
        proto, per_channel = _per_channel_opset(proto, src)
        if not per_channel:
            raise EdgeSegError(f"{src} is opset {default_opset(proto)} and cannot be converted to opset 13, which "
                               "per-channel INT8 weights need", "re-export the model (edgeseg export writes opset 17+)")
    exclude = [f"^{re.escape(n)}$" for n in _postprocessing_nodes(proto)] if meta.task in ("instance", "panoptic") else []
    with tempfile.TemporaryDirectory() as tmp:
        fp32, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, str(fp32))
        np.savez(Path(tmp) / "calibration.npz", *calibration)
        (Path(tmp) / "exclude.json").write_text(json.dumps(exclude))
        # ModelOpt patches onnxruntime.quantization's classes for good when it runs, which breaks ONNX Runtime's own
        # quantizer (quantize_int8) for the rest of the process: so it runs in a process of its own.
        done = subprocess.run([sys.executable, "-m", "edgeseg.quant.tensorrt", tmp, meta.input_name, _METHODS[method]],
                              capture_output=True, text=True)
        if done.returncode != 0 or not out.is_file():
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:200]
            if "calibration" in last.lower() or "input" in last.lower():
                raise _calibration_error(ValueError(last), method, calibration, [meta.input_name])
            raise EdgeSegError(f"ModelOpt {version} could not quantize {src}: {last}",
                               "quantize with --target onnxruntime, or report it with the model")
        quantized = surgery.strip_output_qdq(onnx.load(str(out)))
    problems = placement_problems(quantized)
    if problems["int32_dequantize"]:
        raise EdgeSegError(f"ModelOpt {version} quantized biases to INT32 ({', '.join(problems['int32_dequantize'][:3])}), "
                           "which TensorRT's parser refuses", "pin nvidia-modelopt==0.47.0 (scripts/setup.sh)")
    config = {"calibration": method, "calibration_batches": len(calibration), "weight_bits": 8, "per_channel": True,
              "placement": "tensorrt", "quantizer": f"nvidia-modelopt {version}",
              "float_layers": problems["float_layers"], **(extra or {})}
    return _finish(quantized, meta, "int8", dst, config, check_loads=True, parity_against=src,
                   check_batches=check_batches(calibration, check_data), force=force)


def _dequantized(name: str, producer: dict) -> bool:
    node = producer.get(name)
    return node is not None and node.op_type == "DequantizeLinear"


def placement_problems(proto: onnx.ModelProto) -> dict[str, list[str]]:
    """What a TensorRT INT8 build would see in ``proto``'s main graph, by node name:
    ``float_layers`` compute nodes whose data or weight input is not dequantized (they run in float);
    ``int32_dequantize`` DequantizeLinear nodes on INT32 (biases: the parser refuses them);
    ``unfused_adds`` residual Adds (a conv input) whose other input is not dequantized, or that quantize the conv's
    output too (either keeps TensorRT from fusing the Add into the convolution)."""
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    report: dict[str, list[str]] = {"float_layers": [], "int32_dequantize": [], "unfused_adds": []}
    for n in graph.node:
        if n.op_type in COMPUTE_OPS and not all(_dequantized(i, producer) for i in n.input[:2]):
            report["float_layers"].append(n.name)
        elif n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT32:
            report["int32_dequantize"].append(n.name)
        elif n.op_type == "Add":
            conv = [i for i in n.input if producer.get(i) is not None and producer[i].op_type in ("Conv", "ConvTranspose")]
            other = [i for i in n.input if i not in conv]
            float_conv = [c for c in conv if not all(_dequantized(i, producer) for i in producer[c].input[:2])]
            if conv and not float_conv and not (other and all(_dequantized(i, producer) for i in other)):
                report["unfused_adds"].append(n.name)
    return report


def _place(folder: str, input_name: str, method: str) -> None:
    """The child process: ``folder``/fp32.onnx, calibrated on calibration.npz, excluding exclude.json's nodes, placed by
    ModelOpt into ``folder``/int8.onnx."""
    from modelopt.onnx.quantization import quantize as modelopt_quantize
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("modelopt").setLevel(logging.CRITICAL)  # it says at ERROR level that there is no GPU here
    tmp = Path(folder)
    with np.load(tmp / "calibration.npz") as z:
        batches = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
    quant_pre_process(str(tmp / "fp32.onnx"), str(tmp / "pre.onnx"), skip_symbolic_shape=True)  # folds batch norms
    modelopt_quantize(str(tmp / "pre.onnx"), quantize_mode="int8", calibration_method=method,
                      calibration_data_reader=_reader(input_name, batches), calibration_eps=["cpu"],
                      nodes_to_exclude=json.loads((tmp / "exclude.json").read_text()), output_path=str(tmp / "int8.onnx"),
                      high_precision_dtype="fp32",
                      dq_only=True,  # weights stored as INT8 behind a DequantizeLinear: a quarter of the bytes
                      log_level="CRITICAL")


__all__ = ["COMPUTE_OPS", "modelopt_version", "placement_problems", "quantize_tensorrt"]

if __name__ == "__main__":
    _place(*sys.argv[1:4])
