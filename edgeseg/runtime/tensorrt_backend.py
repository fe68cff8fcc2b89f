"""TensorRT backend (GPU / Jetson): build an engine from an edgeseg ONNX (FP32, FP16, or INT8 from the
explicit Q/DQ graph), and run it with pycuda. Written against the TensorRT 10 Python API (10.3 on
JetPack 6 and later); needs a GPU, TensorRT and pycuda, and says which is missing otherwise.

An engine has no room for edgeseg metadata, so ``<engine>.json`` beside it holds the ONNX metadata
plus the TensorRT version and GPU it was built for: an engine from another version or GPU is refused
with a message before TensorRT is asked to deserialize it.

Nothing runs code named by a file: the sidecar records plugin libraries by *name* and sha256 only. A
session loads them from edgeseg's own plugin folder (``edgeseg.ops.native.plugin_dir()``), or loads the
paths its caller passes (``plugin_libraries=``, CLI ``--plugins``); either way the hash of the library
about to be loaded must match the one recorded (``resolve_plugin_libraries``, a pure function).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeseg.errors import BackendError
from edgeseg.export.metadata import MAX_FIELD_BYTES, ModelMeta, load_onnx, read_metadata
from edgeseg.export.plugins import plugin_nodes
from edgeseg.ops.native import library_path, plugin_dir
from edgeseg.io import atomic_path, write_text_atomic
from edgeseg.runtime.base import check_batch


def _require_tensorrt() -> None:
    """Callers then ``import tensorrt as trt`` themselves, so type checkers see the real module."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise BackendError("TensorRT is not installed", "pip install 'edgeseg[tensorrt]' on a machine with an NVIDIA GPU "
                           "(JetPack ships it on Jetson)") from None


def _init_cuda():
    """pycuda with a context on GPU 0; raises BackendError where there is no driver or GPU."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            raise BackendError("no CUDA GPU found", "run TensorRT engines on a machine with an NVIDIA GPU")
        import pycuda.autoinit  # noqa: F401  (creates and pops the context at exit)
    except ImportError as e:
        raise BackendError(f"pycuda cannot be loaded ({e})", "install pycuda on a machine with the NVIDIA driver") from None
    return cuda


def _load_plugins(libraries: tuple[str, ...]) -> None:
    import tensorrt as trt

    registry = trt.get_plugin_registry()
    for lib in libraries:
        if not Path(lib).is_file():
            raise BackendError(f"plugin library not found: {lib}", "build it with scripts/build_plugins.sh")
        if registry.load_library(str(lib)) is None:
            raise BackendError(f"TensorRT could not load the plugin library {lib}",
                               "rebuild it against this TensorRT version (scripts/build_plugins.sh, TENSORRT_INCLUDE_DIR)")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plugin_record(libraries) -> list[dict]:
    """What an engine's sidecar records of the plugin libraries it was built with: name and sha256."""
    return [{"name": Path(lib).name, "sha256": sha256_file(lib)} for lib in libraries]


def resolve_plugin_libraries(recorded, explicit=(), folder: str | Path | None = None) -> list[Path]:
    """Which shared libraries a session may load for an engine, decided before anything is loaded.

    ``recorded``: the sidecar's ``plugin_libraries`` (untrusted): a list of ``{"name", "sha256"}``.
    ``explicit``: paths the caller passed; loaded instead of the recorded names. ``folder``: edgeseg's
    plugin folder (default ``plugin_dir()``). A recorded name is a bare file name resolved inside the
    folder (no separators, no link out of it) and must carry a sha256; every library to be loaded whose
    name is recorded must have that hash. Anything else is refused with a BackendError."""
    folder = Path(folder if folder is not None else plugin_dir()).resolve()
    fix = "rebuild the engine here with edgeseg (build_engine), or pass the plugin libraries explicitly (--plugins)"
    if not isinstance(recorded, list) or len(recorded) > 16:
        raise BackendError("the engine sidecar's plugin_libraries is not a list of at most 16 entries", fix)
    hashes: dict[str, str] = {}
    for entry in recorded:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("sha256"), str):
            raise BackendError(f"the engine sidecar records a plugin library as {str(entry)[:80]!r}, not a name and a sha256", fix)
        name = entry["name"]
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise BackendError(f"the engine sidecar names the plugin library {name[:80]!r}, which is not a plain file name",
                               "plugin libraries are loaded only from edgeseg's plugin folder; " + fix)
        hashes[name] = entry["sha256"].lower()
    if explicit:
        chosen = [Path(p) for p in explicit]
    else:
        chosen = []
        for name in hashes:
            path = (folder / name).resolve()
            if path.parent != folder:
                raise BackendError(f"the plugin library {name} resolves to {path}, outside the plugin folder {folder}",
                                   "plugin libraries are loaded only from edgeseg's plugin folder; " + fix)
            chosen.append(path)
    for path in chosen:
        if not path.is_file():
            raise BackendError(f"plugin library not found: {path}", "build it with scripts/build_plugins.sh")
        want = hashes.get(path.name)
        if want is not None and sha256_file(path) != want:
            raise BackendError(f"the plugin library {path} is not the one the engine was built with (sha256 differs)",
                               "rebuild the engine with this plugin build, or pass the library it was built with")
    return chosen


def _gpu_name(cuda) -> str:
    return cuda.Device(0).name()


def build_engine(onnx_path: str | Path, engine_path: str | Path, precision: str = "fp16",
                 min_shape=(1, 3, 256, 256), opt_shape=(1, 3, 512, 512), max_shape=(4, 3, 1024, 1024),
                 workspace_gb: float = 2.0, plugin_libraries: tuple[str, ...] = ()) -> Path:
    """Parse the ONNX, build a serialized engine for ``precision`` and write it with its sidecar.

    A tensorrt-flavour graph (edgeseg plugin nodes) loads ``libedgeseg_trt.so`` unless ``plugin_libraries``
    names others."""
    _require_tensorrt()
    import tensorrt as trt

    proto = load_onnx(onnx_path)
    meta = read_metadata(proto, onnx_path)
    if not plugin_libraries and plugin_nodes(proto):
        plugin_libraries = (str(library_path("libedgeseg_trt.so")),)
    cuda = _init_cuda()
    logger = trt.Logger(trt.Logger.WARNING)
    _load_plugins(plugin_libraries)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        standard = {n.op_type for n in proto.graph.node} & {"RoiAlign", "DeformConv"}
        fix = (f"export with --flavour tensorrt: {', '.join(sorted(standard))} become edgeseg plugin nodes" if standard
               else "check the opset and custom ops (plugins)")
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}", fix)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if meta.precision != "int8":
            raise BackendError("INT8 engines are built from the Q/DQ ONNX", "run 'edgeseg quantize' first and build from its output")
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    profile.set_shape(meta.input_name, min_shape, opt_shape, max_shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT failed to build the engine", "see the TensorRT log above")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    sidecar = {**asdict(meta), "precision": precision, "tensorrt_version": trt.__version__, "gpu": _gpu_name(cuda),
               "plugin_libraries": plugin_record(plugin_libraries)}
    write_text_atomic(str(engine_path) + ".json", json.dumps(sidecar, indent=2))
    return Path(engine_path)


def read_engine_sidecar(sidecar: Path) -> dict:
    """``<engine>.json`` as a dict, refusing what is not small, valid JSON (it is untrusted input)."""
    fix = "rebuild the engine with edgeseg so its sidecar is rewritten"
    if sidecar.stat().st_size > MAX_FIELD_BYTES:
        raise BackendError(f"engine sidecar {sidecar} is over {MAX_FIELD_BYTES} bytes", fix)
    try:
        info = json.loads(sidecar.read_bytes())
    except (ValueError, RecursionError):
        raise BackendError(f"engine sidecar {sidecar} is not valid JSON", fix) from None
    if not isinstance(info, dict):
        raise BackendError(f"engine sidecar {sidecar} is not a JSON object", fix)
    return info


class TensorRTSession:
    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, plugin_libraries: tuple[str, ...] = ()):
        _require_tensorrt()
        import tensorrt as trt

        engine_path = Path(engine_path)
        sidecar = Path(str(engine_path) + ".json")
        if not engine_path.is_file():
            raise BackendError(f"engine not found: {engine_path}", "build one with edgeseg.runtime.tensorrt_backend.build_engine")
        if not sidecar.is_file():
            raise BackendError(f"{engine_path} has no {sidecar.name} beside it", "build engines with edgeseg so their metadata travels along")
        info = read_engine_sidecar(sidecar)
        # Decided (and hashed) before any library is loaded or the engine is read.
        libraries = resolve_plugin_libraries(info.get("plugin_libraries", []), tuple(plugin_libraries))
        cuda = _init_cuda()
        if info.get("tensorrt_version") != trt.__version__ or info.get("gpu") != _gpu_name(cuda):
            raise BackendError(f"{engine_path} was built for TensorRT {info.get('tensorrt_version')} on {info.get('gpu')}, "
                               f"this is TensorRT {trt.__version__} on {_gpu_name(cuda)}",
                               "rebuild the engine here from the ONNX file")
        _load_plugins(tuple(str(p) for p in libraries))
        fields = set(ModelMeta.__dataclass_fields__)
        self.meta = ModelMeta.validated({k: v for k, v in info.items() if k in fields}, f"engine sidecar {sidecar}", BackendError)
        self.precision = self.meta.precision
        self.cuda = cuda
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT refused {engine_path} (corrupt or incompatible)", "rebuild the engine from the ONNX file")
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._buffers: dict[str, tuple[int, object]] = {}
        self.trt = trt

    def _device_buffer(self, name: str, nbytes: int):
        size, buf = self._buffers.get(name, (0, None))
        if size < nbytes:
            buf = self.cuda.mem_alloc(nbytes)
            self._buffers[name] = (nbytes, buf)
        return buf

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = check_batch(batch, self.meta)
        name_in = self.meta.input_name
        self.context.set_input_shape(name_in, batch.shape)
        d_in = self._device_buffer(name_in, batch.nbytes)
        self.cuda.memcpy_htod_async(d_in, batch, self.stream)
        self.context.set_tensor_address(name_in, int(d_in))
        host = {}
        for name in self.outputs:
            dims = self.context.get_tensor_shape(name)
            shape = tuple(dims[i] for i in range(len(dims)))
            dtype = self.trt.nptype(self.engine.get_tensor_dtype(name))
            host[name] = self.cuda.pagelocked_empty(shape, dtype)
            self.context.set_tensor_address(name, int(self._device_buffer(name, host[name].nbytes)))
        if not self.context.execute_async_v3(self.stream.handle):
            raise BackendError("TensorRT execution failed", "check the input shape against the engine's profile")
        for name in self.outputs:
            self.cuda.memcpy_dtoh_async(host[name], self._buffers[name][1], self.stream)
        self.stream.synchronize()
        return {n: np.asarray(a, dtype=np.float32) for n, a in host.items()}
