"""INT8 by ONNX Runtime static quantization to explicit Q/DQ (symmetric, per-channel weights: the
form TensorRT consumes), and FP16 with FP32 inputs/outputs."""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx

from edgeseg.errors import EdgeSegError
from edgeseg.export import surgery
from edgeseg.export.metadata import ModelMeta, load_onnx, read_metadata, write_metadata
from edgeseg.io import atomic_path
from edgeseg.quant.fp16 import default_opset

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
PER_CHANNEL_OPSET = 13  # DequantizeLinear's axis (per-channel scales) exists from opset 13
_INSTANCE_INT8_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


class _Reader:
    """Feeds calibration batches to ORT's calibrator."""

    def __init__(self, input_name: str, batches: list[np.ndarray]):
        self.input_name = input_name
        self.batches = iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def check_quantizable(proto: onnx.ModelProto, meta: ModelMeta, src) -> None:
    """INT8 quantization takes an FP32, portable graph: refuse anything else up front, saying why."""
    from edgeseg.export.plugins import plugin_nodes

    if meta.precision != "fp32":
        raise EdgeSegError(f"{src} is already {meta.precision}", "quantize the FP32 export")
    plugins = sorted(set(plugin_nodes(proto)))
    if plugins:
        raise EdgeSegError(f"{src} is a tensorrt-flavour graph ({', '.join(plugins)} plugin nodes) and ONNX Runtime's "
                           "INT8 quantizer cannot calibrate or quantize edgeseg plugin nodes",
                           "quantize the --flavour portable export, or let TensorRT build INT8 from the FP32 graph")


def quantize_int8(src: str | Path, dst: str | Path, calibration: list[np.ndarray], method: str = "minmax",
                  per_channel: bool = True, reduce_range: bool = True, *, check_data=None,
                  force: bool = False, target: str = "onnxruntime") -> ModelMeta:
    """Quantize ``src`` (an FP32 edgeseg ONNX) to a Q/DQ INT8 ``dst`` calibrated on ``calibration``
    (a list of normalised N×C×H×W float32 batches).

    Before it is written the INT8 graph is checked against ``src`` with its task's INT8 row of the tolerance table,
    on ``check_data`` ((batch, labels-or-None) pairs, e.g. validation images) or else the calibration batches. A
    graph that fails is not written (``EdgeSegError``); with ``force`` it is written to ``failed_check_path(dst)``
    instead, its metadata saying it failed.

    ``reduce_range`` keeps weights to 7 bits. On x86 CPUs without VNNI (AVX2 only), ONNX Runtime's
    fused INT8 convolutions add pairs of 8-bit products in 16 bits and saturate: measured on the
    quickstart U-Net, full-range weights dropped liver IoU from 0.60 to 0.0002 while the same graph
    run unfused kept 0.599. 7-bit weights cannot saturate and cost 0.3 IoU points. Turn it off for
    TensorRT or VNNI/ARM targets.
    """
    if target == "tensorrt":  # Q/DQ placed as TensorRT fuses it (edgeseg.quant.tensorrt): 8-bit, per-channel always
        from edgeseg.quant.tensorrt import quantize_tensorrt

        return quantize_tensorrt(src, dst, calibration, method, check_data=check_data, force=force)
    if target != "onnxruntime":
        raise EdgeSegError(f"unknown quantization target '{target}'", "use 'onnxruntime' or 'tensorrt'")
    quantized, _, meta, extra = quantize_qdq(src, calibration, method, per_channel, reduce_range)
    return _finish(quantized, meta, "int8", dst, extra, check_loads=True, parity_against=src,
                   check_batches=check_batches(calibration, check_data), force=force)


def quantize_qdq(src: str | Path, calibration: list[np.ndarray], method: str = "minmax", per_channel: bool = True,
                 reduce_range: bool = True) -> tuple[onnx.ModelProto, onnx.ModelProto, ModelMeta, dict]:
    """``quantize_int8``'s graph, not checked or written: (the Q/DQ graph, the float graph it quantizes, batch norms
    folded, whose initialiser names it shares, ``src``'s metadata, the config to record)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as _quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgeseg.runtime.onnxruntime_backend import ort_errors

    if method not in CALIBRATION_METHODS:
        raise EdgeSegError(f"unknown calibration method '{method}'", f"use one of: {', '.join(CALIBRATION_METHODS)}")
    if not calibration:
        raise EdgeSegError("no calibration images", "give at least one image (--calib-images)")
    proto = load_onnx(src)
    meta = read_metadata(proto, src)
    check_quantizable(proto, meta, src)
    if per_channel and default_opset(proto) < PER_CHANNEL_OPSET:
        proto, per_channel = _per_channel_opset(proto, src)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        onnx.save(proto, str(fp32))
        # Fold batch norm into convolutions first so each conv gets one Q/DQ pair.
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        out = Path(tmp) / "int8.onnx"
        calibration_errors: tuple[type[BaseException], ...] = (ValueError, *ort_errors())
        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        try:
            _quantize_static(
                str(pre), str(out), _Reader(meta.input_name, calibration),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                per_channel=per_channel, reduce_range=reduce_range, calibrate_method=methods[method],
                # Instance and panoptic graphs: only the network's convolutions and GEMMs take INT8. Box decoding, NMS,
                # top-k and mask pasting stay FP32 (an 8-bit box coordinate is off by pixels).
                op_types_to_quantize=list(_INSTANCE_INT8_OPS) if meta.task in ("instance", "panoptic") else None,
                # TensorRT takes symmetric (zero-point 0) INT8 only.
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
        except calibration_errors as e:
            raise _calibration_error(e, method, calibration, _graph_inputs(proto)) from None
        quantized = surgery.strip_output_qdq(onnx.load(str(out)))
        return quantized, onnx.load(str(pre)), meta, {"calibration": method, "calibration_batches": len(calibration),
                                                      "weight_bits": 7 if reduce_range else 8, "per_channel": per_channel}


# INT8 is judged on real images: at most this many (batch, labels) pairs run through both graphs before a write.
CHECK_BATCHES = 8


def check_batches(calibration: list[np.ndarray] | None, data=None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The pairs a converted graph is checked on: ``data`` ((batch, labels-or-None) pairs or bare batches) where given,
    else the calibration batches (no labels), at most ``CHECK_BATCHES``; empty where there are neither."""
    pairs = [d if isinstance(d, tuple) else (d, None) for d in (data if data is not None else calibration or [])]
    return pairs[:CHECK_BATCHES]


def failed_check_path(dst: str | Path) -> Path:
    """Where ``force`` writes a graph that failed its check: a name nobody takes for a passing graph."""
    dst = Path(dst)
    return dst.with_name(f"{dst.stem}.FAILED-CHECK{dst.suffix or '.onnx'}")


def _graph_inputs(proto: onnx.ModelProto) -> list[str]:
    initializers = {t.name for t in proto.graph.initializer}
    return [i.name for i in proto.graph.input if i.name not in initializers]


def _per_channel_opset(proto: onnx.ModelProto, src) -> tuple[onnx.ModelProto, bool]:
    """An opset < 13 graph for per-channel INT8: the graph converted to opset 13, or, where ONNX cannot
    convert it, the graph as it is with per-tensor scales (said in one line)."""
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(proto, PER_CHANNEL_OPSET)
        onnx.checker.check_model(converted)
        return converted, True
    except Exception as e:  # the converter raises bare RuntimeErrors and checker errors alike
        warnings.warn(f"{src} is opset {default_opset(proto)} and could not be converted to opset {PER_CHANNEL_OPSET} "
                      f"({(str(e).strip().splitlines() or [type(e).__name__])[0][:120]}): using per-tensor INT8 scales",
                      stacklevel=3)
        return proto, False


def _calibration_error(e: BaseException, method: str, calibration: list[np.ndarray], inputs: list[str]) -> EdgeSegError:
    """Say what went wrong in calibration; suggest another method only where the method was the cause."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    if any(m in first.lower() for m in ("missing from input feed", "invalid input name")):  # ORT's words for a wrong name
        return EdgeSegError(f"calibration could not feed the graph: {first}",
                            f"the graph's inputs are {', '.join(inputs)[:200]}; name the image input in input_name")
    if isinstance(e, ValueError) and method != "minmax":  # numpy's histogram refuses near-constant tensors
        return EdgeSegError(f"{method} calibration failed: {first}",
                            "calibrate on more varied images, or use --method minmax")
    shapes = sorted({"×".join(map(str, b.shape)) for b in calibration})
    return EdgeSegError(f"{method} calibration failed on {', '.join(shapes)[:100]} batches: {first}",
                        "check the calibration images against the model (channels, size, input_size)")


def convert_fp16(src: str | Path, dst: str | Path) -> ModelMeta:
    """FP16 weights and compute for the network (``edgeseg.quant.fp16``); inputs, outputs and the
    post-processing stay FP32, so callers need not change. Written only after the FP16 graph loads in
    ONNX Runtime and passes the FP16 parity row against ``src`` on a random input."""
    from edgeseg.quant.fp16 import to_fp16

    proto = load_onnx(src)
    meta = read_metadata(proto, src)
    if meta.precision != "fp32":
        raise EdgeSegError(f"{src} is already {meta.precision}", "convert the FP32 export")
    return _finish(surgery.clean(to_fp16(proto)), meta, "fp16", dst, {}, check_loads=True, parity_against=src)


def _finish(proto: onnx.ModelProto, meta: ModelMeta, precision: str, dst, extra: dict,
            check_loads: bool = False, parity_against=None, check_batches=None, force: bool = False) -> ModelMeta:
    """Write ``proto`` with ``meta`` (precision and ``extra`` config) to ``dst``, after it loads in ONNX Runtime
    (``check_loads``) and passes its parity check against ``parity_against`` (on ``check_batches``, else a random
    input). With ``force`` a graph that fails the check goes to ``failed_check_path(dst)``, its metadata saying so."""
    meta.precision = precision
    meta.config = {**meta.config, **extra}
    write_metadata(proto, meta)
    onnx.checker.check_model(proto)
    if check_loads:
        _check_ort_loads(proto, precision, dst)
    if parity_against is None:
        with atomic_path(dst) as tmp:
            onnx.save(proto, str(tmp))
        return meta
    with tempfile.TemporaryDirectory() as tmp:  # judged before anything is written where a good file is expected
        candidate = Path(tmp) / "candidate.onnx"
        onnx.save(proto, str(candidate))
        report, on = _check_parity(parity_against, candidate, meta, check_batches)
    if not report.passed:
        what = f"the {precision} graph fails its parity check against {parity_against} on {on} ({report.summary()})"
        if not force:
            raise EdgeSegError(f"{what}; nothing was written to {dst}",
                               "keep the sensitive layers in float (edgeseg quantize --max-drop), or keep the FP32 graph; "
                               "--force writes it under a FAILED-CHECK name" if precision == "int8" else
                               "keep the FP32 graph for this model, or let TensorRT build FP16 from the FP32 graph; "
                               "report it if it is an edgeseg export")
        dst = failed_check_path(dst)
        warnings.warn(f"{what}; written anyway (force) to {dst}", stacklevel=3)
    meta.config = {**meta.config, "check": {"passed": report.passed, "on": on, "summary": report.summary()[:300]}}
    write_metadata(proto, meta)
    with atomic_path(dst) as tmp:
        onnx.save(proto, str(tmp))
    return meta


def _check_parity(reference, candidate, meta: ModelMeta, batches=None):
    """The converted graph against the FP32 one, judged by the tolerance table (``edgeseg.judge``): a graph that
    loads but computes something else (an overflow, a lost constant, INT8 that lost the decision) is refused.
    Judged on ``batches`` where given (real images: random input is a poor judge of INT8), else on a random input,
    said in a note for INT8. Returns (report, what it ran on)."""
    from edgeseg.judge import compare, random_batches
    from edgeseg.runtime import open_session

    if batches:
        on = f"{len(batches)} given batch{'es' if len(batches) > 1 else ''}"
    else:
        d = meta.size_divisor
        side = max(4 * d, 128) // d * d  # the size export traces at (random_batches takes a fixed-size graph's own)
        batches, on = list(random_batches(meta, [(side, side)])), "a random input"
        if meta.precision == "int8":
            warnings.warn("no calibration or validation batches to check the INT8 graph on: checked on a random input, "
                          "a poor judge of INT8", stacklevel=4)
    return compare(open_session(reference), open_judged_session(candidate, meta), batches, meta.precision), on


def open_judged_session(path, meta: ModelMeta):
    """An ONNX Runtime session of a converted graph, as checks judge it. An INT8 graph with 8-bit weights (for
    TensorRT, VNNI or ARM) runs unfused, its Q/DQ arithmetic exactly as the graph says: ONNX Runtime's fused INT8
    kernels on AVX2-only CPUs saturate 8-bit weights (``quantize_int8``), which would judge one CPU's kernel, not
    the graph. 7-bit graphs (for ONNX Runtime) run as they will run."""
    from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSession

    session = OnnxRuntimeSession(path)
    if meta.precision == "int8" and meta.config.get("weight_bits", 8) == 8:
        import onnxruntime as ort

        from edgeseg.runtime.onnxruntime_backend import session_options

        options = session_options(None, session.custom_op_libraries)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session


def _check_ort_loads(proto: onnx.ModelProto, precision: str, dst) -> None:
    """Refuse to write a converted graph that ONNX Runtime cannot load (e.g. FP16 plugin nodes whose
    custom-op kernels are FP32 only), rather than report success for a file nothing here can run."""
    import onnxruntime as ort

    from edgeseg.export.plugins import plugin_nodes
    from edgeseg.runtime.onnxruntime_backend import ort_errors, session_options

    libraries: tuple[str, ...] = ()
    if plugin_nodes(proto):
        from edgeseg.ops.native import library_path

        libraries = (str(library_path("libedgeseg_ort.so")),)
    try:
        ort.InferenceSession(proto.SerializeToString(), session_options(1, libraries), providers=["CPUExecutionProvider"])
    except ort_errors() as e:  # the graph does not load here, whatever the node
        raise EdgeSegError(f"the {precision} graph does not load in ONNX Runtime ({(str(e).strip().splitlines() or [''])[0][:200]}); "
                           f"nothing was written to {dst}",
                           "convert the --flavour portable export, or build a TensorRT engine from the FP32 graph") from None


__all__ = ["CALIBRATION_METHODS", "CHECK_BATCHES", "check_batches", "check_quantizable", "convert_fp16",
           "failed_check_path", "quantize_int8"]
