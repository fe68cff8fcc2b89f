"""ONNX Runtime backend (CPU by default; CUDA/TensorRT execution providers where installed)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeseg.errors import BackendError, InputError, OnnxFileError
from edgeseg.export.metadata import load_onnx, read_metadata
from edgeseg.export.plugins import plugin_nodes
from edgeseg.ops.native import library_path
from edgeseg.runtime.base import check_batch


def session_options(threads: int | None = None, custom_op_libraries: tuple[str, ...] = (), profile_prefix: str | None = None):
    """``profile_prefix``: ONNX Runtime's profiler on, its JSON written there (``session.end_profiling()``)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads steal the cores PyTorch needs in the same process and skew side-by-side timing.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 4  # fatal only: errors reach the caller as exceptions, in one line
    for lib in custom_op_libraries:
        if not Path(lib).is_file():
            raise BackendError(f"custom-op library not found: {lib}", "build it with scripts/build_plugins.sh")
        so.register_custom_ops_library(str(lib))
    return so


class OnnxRuntimeSession:
    backend = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None,
                 custom_op_libraries: tuple[str, ...] = (), profile_prefix: str | None = None):
        import onnxruntime as ort

        proto = load_onnx(path)
        if plugin_nodes(proto) and not custom_op_libraries:  # a tensorrt-flavour graph: its plugins run as CPU custom ops
            custom_op_libraries = (str(library_path("libedgeseg_ort.so")),)
        self.custom_op_libraries = custom_op_libraries
        self.meta = read_metadata(proto, path)
        self.precision = self.meta.precision
        self.path = Path(path)
        available = ort.get_available_providers()
        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in available]
        if missing:
            raise BackendError(f"ONNX Runtime here has no {', '.join(missing)} (it has {', '.join(available)})",
                               "install onnxruntime-gpu on a machine with CUDA, or use the CPU provider")
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), session_options(threads, custom_op_libraries, profile_prefix),
                                                providers=providers)
        except Exception as e:  # ORT raises its own exception types for invalid graphs and missing custom ops
            raise OnnxFileError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0][:300]}",
                                "check the model's opset and custom ops (tensorrt-flavour graphs need the custom-op library)") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_dtype = {"tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(self.session.get_inputs()[0].type,
                                                                                           np.float32)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = check_batch(batch, self.meta).astype(self.input_dtype, copy=False)
        try:
            outs = self.session.run(self.output_names, {self.input_name: batch})
        except ort_errors() as e:  # a node (a custom op, a reshape) refused this input: say so in one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            kind = InputError if type(e).__name__ == "InvalidArgument" else BackendError
            raise kind(f"ONNX Runtime failed running {self.path.name} on a {'×'.join(map(str, batch.shape))} input: {first}",
                       "check the input against the model (size, channels); if it is right, re-export the model") from None
        # float outputs (FP16 graphs included) come back float32; integer outputs (labels, counts) stay integers
        return {n: np.asarray(o, dtype=np.float32) if np.issubdtype(np.asarray(o).dtype, np.floating) else np.asarray(o)
                for n, o in zip(self.output_names, outs)}


def ort_errors() -> tuple[type[BaseException], ...]:
    """The exception types ONNX Runtime raises from a run (its pybind state module defines them)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(getattr(state, n) for n in ("Fail", "InvalidArgument", "RuntimeException", "NotImplemented",
                                             "EPFail", "InvalidGraph", "NoSuchFile") if hasattr(state, n))
