"""Variant files and sessions: which backend:precision pairs exist, which can run here, and the ONNX file (exported
once, FP16 by conversion, INT8 as a Q/DQ graph) and Session each one runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.errors import EdgeSegError
from edgeseg.runtime import Session, open_session

DEFAULT_VARIANTS = ("torch:fp32", "onnxruntime:fp32", "onnxruntime:int8")
# PyTorch: eager on the CPU (the reference), torch.compile on the CPU, eager and compiled on a CUDA device.
TORCH_BACKENDS = ("torch", "torch-compile", "torch-cuda", "torch-cuda-compile")
BENCH_BACKENDS = (*TORCH_BACKENDS, "onnxruntime", "tensorrt")


def parse_variant(text: str) -> tuple[str, str]:
    backend, _, precision = text.partition(":")
    precision = precision or "fp32"
    if backend not in BENCH_BACKENDS or precision not in ("fp32", "fp16", "int8"):
        raise EdgeSegError(f"bad variant '{text}'",
                           f"write backend:precision, e.g. onnxruntime:int8 (backends: {', '.join(BENCH_BACKENDS)})")
    if backend in TORCH_BACKENDS and precision != "fp32" and not (backend.startswith("torch-cuda") and precision == "fp16"):
        raise EdgeSegError(f"'{text}': PyTorch runs fp32, and fp16 (autocast) on a CUDA device only",
                           "use torch:fp32, torch-cuda:fp16 or torch-cuda-compile:fp16")
    return backend, precision


def variant_missing(backend: str) -> str | None:
    """Why ``backend``'s variants cannot run here (one line), or None: TensorRT needs TensorRT, pycuda and a GPU,
    the torch-cuda variants a CUDA device."""
    if backend == "tensorrt":
        return tensorrt_missing()
    if backend.startswith("torch-cuda"):
        from edgeseg.runtime.torch_backend import cuda_missing

        return cuda_missing()
    return None


def runnable_variants(variants) -> tuple[list[str], list[str]]:
    """The variants that can run here, and one note per reason the others cannot ("<backends> variants skipped: why")."""
    keep, skipped = [], {}
    for v in variants:
        backend = parse_variant(v)[0]
        why = variant_missing(backend)
        if why is None:
            keep.append(v)
        elif backend not in skipped.setdefault(why, []):
            skipped[why].append(backend)
    return keep, [f"{', '.join(backends)} variants skipped: {why}" for why, backends in skipped.items()]


def open_torch_variant(model, meta, backend: str, precision: str) -> Session:
    """A PyTorch variant's session: on CUDA for torch-cuda*, through torch.compile for *-compile."""
    return open_session(model, "torch", meta=meta, device="cuda" if backend.startswith("torch-cuda") else "cpu",
                        precision=precision, compile=backend.endswith("-compile"))


def variant_file(fp32: Path, backend: str, precision: str, calibration: list[np.ndarray], calib_method: str) -> Path:
    """The ONNX file a variant runs, derived from ``fp32`` beside it once: FP16 by conversion, INT8 as a Q/DQ graph
    (7-bit weights for ONNX Runtime on AVX2; 8-bit for TensorRT, whose build refuses 7). TensorRT FP16 builds
    from the FP32 graph."""
    from edgeseg.quant import convert_fp16, failed_check_path, quantize_int8

    if precision == "fp32" or (backend == "tensorrt" and precision == "fp16"):
        return fp32
    path = fp32.with_name(f"{fp32.stem}_{precision}{'_trt' if backend == 'tensorrt' else ''}.onnx")
    if failed_check_path(path).exists():
        return failed_check_path(path)
    if not path.exists():
        if precision == "fp16":
            convert_fp16(fp32, path)
        else:  # a bench measures what INT8 costs: one that fails its check is timed and scored too, under its FAILED name
            meta = quantize_int8(fp32, path, calibration, calib_method, reduce_range=backend != "tensorrt", force=True)
            if meta.config.get("check", {}).get("passed") is False:
                return failed_check_path(path)
    return path


def build_variants(model, meta, variants, workdir: Path, calibration: list[np.ndarray], calib_method: str,
                   exporter: str = "dynamo", sample=None) -> tuple[dict[str, Session], dict[str, Path]]:
    """Export once, derive the precisions, open one Session per variant."""
    from edgeseg.export import export_onnx

    sessions: dict[str, Session] = {}
    files: dict[str, Path] = {}
    fp32 = workdir / f"{meta.model}.onnx"
    for v in variants:
        backend, precision = parse_variant(v)
        if backend in TORCH_BACKENDS:
            sessions[v] = open_torch_variant(model, meta, backend, precision)
            continue
        if not fp32.exists():
            export_onnx(model, fp32, meta=meta, exporter=exporter, sample=sample)
        files[v] = variant_file(fp32, backend, precision, calibration, calib_method)
        sessions[v] = open_session(files[v], backend)
    return sessions, files


def tensorrt_missing() -> str | None:
    """Why TensorRT variants cannot run here (one line), or None when TensorRT, pycuda and a GPU are present."""
    import importlib.util

    for module in ("tensorrt", "pycuda"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    if not Path("/dev/nvidiactl").exists() and not Path("/dev/nvidia0").exists():
        return "no NVIDIA GPU is visible"
    return None


def int8_routes(checkpoint: Path, fp32: Path, meta, calibration: list[np.ndarray], check: list, max_drop: float = 0.5,
                group_depth: int | None = None, qat_iterations: int = 60) -> tuple[dict[str, Path], dict[str, dict]]:
    """INT8 of one trained model by every route, beside ``fp32`` (its export): post-training quantization for ONNX
    Runtime (7-bit weights) and with TensorRT's Q/DQ placement (8-bit), mixed precision within ``max_drop`` points,
    and QAT (``qat_iterations`` more steps from ``checkpoint``) with TensorRT's placement, plus "FP32 of the QAT
    weights" (QAT's own float reference: it trained further). Returns each route's file and row (layers kept in
    float, the pre-write check on ``check``, a note); a graph that fails its check is kept under its FAILED-CHECK
    name so that its metric can be reported, and a route that fails altogether has a row that says why."""
    import torch

    from edgeseg.export import export_onnx
    from edgeseg.models.checkpoint import load_checkpoint
    from edgeseg.quant import failed_check_path, quantize_int8
    from edgeseg.quant.qat import export_qat, strip_qat
    from edgeseg.quant.sensitivity import quantize_mixed
    from edgeseg.quant.tensorrt import quantize_tensorrt
    from edgeseg.train import train_qat

    d, sample, twin = fp32.parent, torch.as_tensor(calibration[0][:1]), "FP32 of the QAT weights"
    files, rows = {"FP32": fp32}, {"FP32": {"float_layers": "all", "check": "–"}}

    def checked(name, path, written, float_layers=0, note=""):
        passed = written.config.get("check", {}).get("passed")
        files[name] = path if passed is not False else failed_check_path(path)
        rows[name] = {"float_layers": float_layers, "check": {True: "passed", False: "FAILED"}.get(passed, "?"), "note": note}

    def mixed(name):
        r = quantize_mixed(fp32, d / "mixed.onnx", calibration, check, max_drop=max_drop, group_depth=group_depth,
                           force=True)
        checked(name, d / "mixed.onnx", r.meta, len(r.float_layers), f"{r.metric} drop {r.int8_drop:.2f} -> {r.drop:.2f} "
                "as edgeseg.judge scores it on the val images (the budget's metric)" + (f"; layers grouped by the first "
                f"{group_depth} parts of their names" if group_depth else "") + "; float: " + (", ".join(r.float_layers) or "none"))

    def qat(name):
        model, _ = train_qat(checkpoint, d / "qat.pt", iterations=qat_iterations, calib_images=len(calibration),
                             progress=False, log=lambda *x: None)
        try:  # export_qat writes only a graph that passes; the forced route keeps a failing one for its metric
            checked(name, d / "qat.onnx", export_qat(model, d / "qat.onnx", calibration, meta=meta, check_data=check))
        except EdgeSegError:
            export_onnx(strip_qat(model).eval(), d / "qat_fp32.onnx", meta=meta, sample=sample)
            checked(name, d / "qat.onnx", quantize_tensorrt(d / "qat_fp32.onnx", d / "qat.onnx", calibration,
                                                            check_data=check, force=True, extra={"qat": True}))
        export_onnx(load_checkpoint(d / "qat.pt")[0].eval(), d / "qat_float.onnx", meta=meta, sample=sample)
        files[twin], rows[twin] = d / "qat_float.onnx", {"float_layers": "all", "check": "–"}

    jobs = {name: lambda name, t=t: checked(name, d / f"{t}.onnx", quantize_int8(
        fp32, d / f"{t}.onnx", calibration, check_data=check, force=True, target=t))
        for name, t in (("PTQ (ORT, 7-bit)", "onnxruntime"), ("PTQ TensorRT placement", "tensorrt"))}
    jobs |= {f"mixed (max drop {max_drop:g})": mixed, f"QAT {qat_iterations} steps + TensorRT placement": qat}
    for name, job in jobs.items():
        try:
            job(name)
        except Exception as e:  # noqa: BLE001  (the row says why)
            rows[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return files, rows
