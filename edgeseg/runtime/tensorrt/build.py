"""Engines from edgeseg ONNX files, against the TensorRT 10 Python API (10.3 on JetPack 6 and later).

``build_engine`` parses the ONNX (networks are always explicit-batch in TensorRT 10), sets one optimization
profile, the precision flags (INT8 from the Q/DQ graph itself: TensorRT 10 needs no calibrator and 11 has
none), an optional timing cache, DLA with GPU fallback, version/hardware compatibility, and writes the
engine and its ``<engine>.json`` sidecar atomically.

The pure parts are here too and tested on every machine: the shape profile derived from the metadata
(``derive_profile``), trtexec-style ``--shapes`` strings (``parse_shapes``), the refusal of a Q/DQ graph
quantized for ONNX Runtime on AVX2 (7-bit weights), and the plugin-library rules (``resolve_plugin_libraries``:
nothing runs code named by a file).
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from edgeseg.errors import BackendError
from edgeseg.export.metadata import ModelMeta, load_onnx, read_metadata
from edgeseg.export.plugins import plugin_nodes
from edgeseg.io import atomic_path, write_text_atomic
from edgeseg.ops.native import library_path, plugin_dir
from edgeseg.runtime.tensorrt.cache import ShapeProfile, sha256_file

PRECISIONS = ("fp32", "fp16", "int8")
TRT_PLUGIN_LIBRARY = "libedgeseg_trt.so"
DEFAULT_SIDES = (256, 512, 1024)  # min / opt / max image side of a dynamic-size graph, before alignment
DEFAULT_MAX_BATCH = 4
MAX_SIDE = 8192
MAX_BATCH = 1024


@dataclass(frozen=True)
class OnnxSource:
    """An ONNX file read once for an engine build: its graph (external weights stay on disk, where TensorRT's parser
    finds them beside ``path``) and its metadata. The cache key, the checks and TensorRT's parser all take this one
    object, so nothing below the caller reads or parses the file again."""

    path: Path
    proto: Any  # onnx.ModelProto
    meta: ModelMeta

    @classmethod
    def read(cls, path: str | Path) -> "OnnxSource":
        path = Path(path)
        proto = load_onnx(path, load_weights=False)
        return cls(path, proto, read_metadata(proto, path))


# ---------------------------------------------------------------- what TensorRT needs, said when missing

def require_tensorrt() -> None:
    """Callers then ``import tensorrt as trt`` themselves, so type checkers see the real module."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise BackendError("TensorRT (the full builder and runtime) is not installed",
                           "pip install 'edgeseg[tensorrt]' on a machine with an NVIDIA GPU (JetPack ships it on Jetson)") from None


def init_cuda():
    """pycuda with a context on GPU 0; raises BackendError where there is no pycuda, driver or GPU."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            raise BackendError("no CUDA GPU found", "run TensorRT engines on a machine with an NVIDIA GPU")
        import pycuda.autoinit  # noqa: F401  (creates the context on GPU 0, pops it at exit)
    except ImportError as e:
        raise BackendError(f"pycuda cannot be loaded ({e})", "pip install pycuda on a machine with the NVIDIA driver") from None
    return cuda


def gpu_info(cuda) -> tuple[str, tuple[int, int]]:
    """The name and compute capability of GPU 0 (what an engine is bound to)."""
    device = cuda.Device(0)
    major, minor = device.compute_capability()
    return str(device.name()), (int(major), int(minor))


# ---------------------------------------------------------------- plugin libraries

def plugin_record(libraries) -> list[dict]:
    """What an engine's sidecar records of the plugin libraries it was built with: name and sha256."""
    return [{"name": Path(lib).name, "sha256": sha256_file(lib)} for lib in libraries]


PLUGIN_MANIFEST = "SHA256SUMS"  # written by scripts/build_plugins.sh beside the libraries it built (sha256sum's format)


def pinned_hashes(folder: Path) -> dict[str, str]:
    """The sha256 of each library edgeseg's plugin build recorded in ``folder``: the only hashes a library found
    by name is trusted by (an engine's sidecar says which build it needs, never which hash is good)."""
    path = folder / PLUGIN_MANIFEST
    try:
        text = path.read_text() if path.is_file() and path.stat().st_size < 1 << 16 else None
    except (OSError, UnicodeDecodeError):
        text = None
    if text is None:
        raise BackendError(f"the plugin folder {folder} has no {PLUGIN_MANIFEST} recording its build's hashes",
                           "rebuild the plugins with scripts/build_plugins.sh, or pass the libraries explicitly (--plugins)")
    pins = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            pins[parts[1].lstrip("*")] = parts[0].lower()
    return pins


def resolve_plugin_libraries(recorded, explicit=(), folder: str | Path | None = None) -> list[Path]:
    """Which shared libraries a session may load for an engine, decided before anything is loaded.

    ``recorded``: the sidecar's ``plugin_libraries`` (untrusted): a list of ``{"name", "sha256"}``.
    ``explicit``: paths the caller passed; loaded instead of the recorded names. ``folder``: edgeseg's
    plugin folder (default ``plugin_dir()``). A recorded name is a bare file name resolved inside the
    folder (no separators, no link out of it) and must carry a sha256, which must be the one the folder's
    build recorded (``PLUGIN_MANIFEST``); every library to be loaded whose name is recorded must have that
    hash. Anything else is refused with a BackendError."""
    folder = Path(folder if folder is not None else plugin_dir()).resolve()
    fix = "rebuild the engine here with edgeseg (edgeseg build), or pass the plugin libraries explicitly (--plugins)"
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
        pins = pinned_hashes(folder) if hashes else {}
        for name in hashes:
            path = (folder / name).resolve()
            if path.parent != folder:
                raise BackendError(f"the plugin library {name} resolves to {path}, outside the plugin folder {folder}",
                                   "plugin libraries are loaded only from edgeseg's plugin folder; " + fix)
            if pins.get(name) != hashes[name]:
                raise BackendError(f"the engine needs a {name} of sha256 {hashes[name][:16]}..., which is not one this "
                                   f"plugin build recorded ({folder / PLUGIN_MANIFEST})", fix)
            chosen.append(path)
    for path in chosen:
        if not path.is_file():
            raise BackendError(f"plugin library not found: {path}", "build it with scripts/build_plugins.sh")
        want = hashes.get(path.name)
        if want is not None and sha256_file(path) != want:
            raise BackendError(f"the plugin library {path} is not the one the engine was built with (sha256 differs)",
                               "rebuild the engine with this plugin build, or pass the library it was built with")
    return chosen


def build_plugin_libraries(proto, explicit: Sequence[str | Path] = ()) -> list[Path]:
    """The plugin libraries a build loads: the caller's, else edgeseg's own TensorRT plugin library for a
    tensorrt-flavour graph (edgeseg plugin nodes), else none."""
    if explicit:
        paths = [Path(p) for p in explicit]
        for p in paths:
            if not p.is_file():
                raise BackendError(f"plugin library not found: {p}", "build it with scripts/build_plugins.sh")
        return paths
    return [library_path(TRT_PLUGIN_LIBRARY)] if plugin_nodes(proto) else []


_plugins_lock = threading.Lock()
_loaded_plugins: dict[str, str] = {}  # resolved path -> sha256, once per process
_builtin_plugins = False
_plugin_logger = None  # TensorRT keeps the logger it was given: it must outlive the process's plugins


def load_plugins(libraries: Sequence[str | Path], logger=None) -> None:
    """TensorRT's own plugins and the given libraries into the process-wide registry, each at most once per
    process (TensorRT registers a library's creators again on a second load). A path loaded before with
    other content (rebuilt meanwhile) is refused: the process still holds the old one."""
    import tensorrt as trt

    global _builtin_plugins, _plugin_logger
    with _plugins_lock:
        if not _builtin_plugins:
            _plugin_logger = logger or trt.Logger(trt.Logger.WARNING)
            trt.init_libnvinfer_plugins(_plugin_logger, "")
            _builtin_plugins = True
        register_libraries(trt.get_plugin_registry(), libraries)


def register_libraries(registry, libraries: Sequence[str | Path]) -> list[Path]:
    """Load each library into ``registry`` (TensorRT's, or tensorrt_lean's: the same IPluginRegistry) unless this
    process loaded it before; returns the ones loaded now. Call under ``_plugins_lock`` or from one thread."""
    loaded = []
    for lib in libraries:
        path = Path(lib).resolve()
        if not path.is_file():
            raise BackendError(f"plugin library not found: {path}", "build it with scripts/build_plugins.sh")
        digest = sha256_file(path)
        if str(path) in _loaded_plugins:
            if _loaded_plugins[str(path)] != digest:
                raise BackendError(f"the plugin library {path} changed since this process loaded it",
                                   "restart the process to load the new build")
            continue
        if registry.load_library(str(path)) is None:
            raise BackendError(f"TensorRT could not load the plugin library {path}",
                               "rebuild it against this TensorRT version (scripts/build_plugins.sh, TENSORRT_INCLUDE_DIR)")
        _loaded_plugins[str(path)] = digest
        loaded.append(path)
    return loaded


# ---------------------------------------------------------------- shapes

_DIMS = re.compile(r"^[0-9]+(x[0-9]+)*$")


def _dims(text: str, what: str) -> tuple[int, ...]:
    if not _DIMS.match(text):
        raise BackendError(f"{what}: '{text[:60]}' is not dimensions like 1x3x512x512", "write e.g. --shapes input:1x3x512x512")
    return tuple(int(d) for d in text.split("x"))


def parse_shapes(text: str) -> list[ShapeProfile]:
    """trtexec-style shapes: ``NAME:DIMS`` (a fixed shape) or ``NAME:MIN:OPT:MAX`` (a range), inputs separated
    by commas; DIMS like ``1x3x512x512``. A name may itself hold colons (``input:0``): the trailing one or
    three fields that are dimensions are the shapes."""
    profiles = []
    for item in [s.strip() for s in text.split(",")]:
        parts = item.split(":")
        n_dims = 0
        while n_dims < len(parts) - 1 and _DIMS.match(parts[len(parts) - 1 - n_dims]):
            n_dims += 1
        if n_dims >= 3:
            n_dims = 3
        elif n_dims >= 1:
            n_dims = 1
        name = ":".join(parts[: len(parts) - n_dims])
        if not name or n_dims == 0:
            raise BackendError(f"--shapes: '{item[:80]}' is not NAME:DIMS or NAME:MIN:OPT:MAX",
                               "write e.g. --shapes input:1x3x512x512 or input:1x3x256x256:1x3x512x512:4x3x1024x1024")
        shapes = [_dims(p, f"--shapes {name}") for p in parts[len(parts) - n_dims:]]
        lo, opt, hi = (shapes * 3)[:3] if n_dims == 1 else shapes
        profiles.append(ShapeProfile(name, lo, opt, hi))
    if len({p.name for p in profiles}) != len(profiles):
        raise BackendError("--shapes names an input twice", "give each input once")
    return profiles


def graph_input_dims(proto) -> dict[str, list[int | None]]:
    """Each graph input's dimensions: an int where static, None where dynamic."""
    initializers = {t.name for t in proto.graph.initializer}
    out = {}
    for inp in proto.graph.input:
        if inp.name in initializers:
            continue
        dims = inp.type.tensor_type.shape.dim
        out[inp.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    return out


def graph_io(proto) -> dict[str, dict]:
    """Each graph input and output: ``{"kind": "input"|"output", "dtype": numpy name, "dims": [int or -1]}``.
    TensorRT keeps the ONNX graph's I/O types, so an engine's sidecar records these for its consumers
    (e.g. a Triton config), which cannot ask TensorRT without a GPU."""
    import onnx

    initializers = {t.name for t in proto.graph.initializer}
    out: dict[str, dict] = {}
    for kind, values in (("input", proto.graph.input), ("output", proto.graph.output)):
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "unknown"
            dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim]
            out[v.name] = {"kind": kind, "dtype": dtype, "dims": dims}
    return out


def _align_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def derive_profile(meta: ModelMeta, graph_dims: Sequence[int | None], max_batch: int = DEFAULT_MAX_BATCH,
                   sides: tuple[int, int, int] = DEFAULT_SIDES) -> ShapeProfile:
    """The optimization profile of the image input from the metadata and the graph's own dimensions.

    Channels: ``in_channels``. H and W: a fixed-size graph's ``input_size`` (or static graph dims), else
    ``sides`` rounded up to multiples of ``size_divisor``. Batch: static in the graph (panoptic graphs merge
    image by image and export with a fixed batch; a dynamic panoptic batch is fixed at 1), else 1 / 1 /
    ``max_batch``."""
    if len(graph_dims) != 4:
        raise BackendError(f"input '{meta.input_name}' has rank {len(graph_dims)}, not 4 (N, C, H, W or N, H, W, C)",
                           "build from an edgeseg ONNX export")
    nhwc = meta.input_layout == "NHWC" or meta.io == "frames"  # a deploy graph takes N×H×W×C frames
    n, c, h, w = (graph_dims[0], graph_dims[3], graph_dims[1], graph_dims[2]) if nhwc else tuple(graph_dims)
    if c is not None and c != meta.in_channels:
        raise BackendError(f"input '{meta.input_name}' has {c} channels in the graph, the metadata says {meta.in_channels}",
                           "re-export the model with edgeseg")
    if not 1 <= max_batch <= MAX_BATCH:
        raise BackendError(f"max batch {max_batch} is outside 1..{MAX_BATCH}", "choose a smaller --max-batch")
    if n is not None:
        batch = (n, n, n)
    elif meta.task == "panoptic":
        batch = (1, 1, 1)
    else:
        batch = (1, 1, max_batch)

    def side(static: int | None, fixed: int | None) -> tuple[int, int, int]:
        if fixed is not None:
            return fixed, fixed, fixed
        if static is not None:
            return static, static, static
        lo, opt, hi = (_align_up(max(s, meta.size_divisor), meta.size_divisor) for s in sides)
        return lo, opt, hi

    size: list[int | None] = list(meta.input_size) if meta.input_size else [None, None]
    hs, ws = side(h, size[0]), side(w, size[1])
    shapes = []
    for i in range(3):
        dims = (batch[i], hs[i], ws[i], meta.in_channels) if nhwc else (batch[i], meta.in_channels, hs[i], ws[i])
        shapes.append(dims)
    return ShapeProfile(meta.input_name, *shapes)


def check_profile(profile: ShapeProfile, meta: ModelMeta, graph_dims: Sequence[int | None], panoptic_batch_fixed: bool = True) -> None:
    """An explicit profile (``--shapes``) against the graph and the metadata: name, rank, static dims,
    channels, H/W multiples of ``size_divisor`` (dynamic graphs) and budgets."""
    if profile.name != meta.input_name:
        raise BackendError(f"--shapes names input '{profile.name}', the model's input is '{meta.input_name}'",
                           f"write --shapes {meta.input_name}:...")
    if len(profile.min) != len(graph_dims):
        raise BackendError(f"--shapes gives rank {len(profile.min)} for '{profile.name}', the graph has rank {len(graph_dims)}",
                           "give one dimension per axis")
    nhwc = meta.input_layout == "NHWC" or meta.io == "frames"  # a deploy graph takes N×H×W×C frames
    c_axis, hw_axes = (3, (1, 2)) if nhwc else (1, (2, 3))
    for shape in (profile.min, profile.opt, profile.max):
        for axis, (want, got) in enumerate(zip(graph_dims, shape)):
            if want is not None and want != got:
                raise BackendError(f"--shapes {profile.name}: axis {axis} is {got}, the graph fixes it at {want}",
                                   "keep the graph's static dimensions")
        if shape[c_axis] != meta.in_channels:
            raise BackendError(f"--shapes {profile.name}: {shape[c_axis]} channels, the model takes {meta.in_channels}",
                               f"use {meta.in_channels} channels")
        if shape[0] > MAX_BATCH or any(shape[a] > MAX_SIDE for a in hw_axes):
            raise BackendError(f"--shapes {profile.name}: {shape} is over the budget (batch {MAX_BATCH}, side {MAX_SIDE})",
                               "choose smaller shapes")
        if meta.input_size is None and meta.io != "frames" and any(shape[a] % meta.size_divisor for a in hw_axes):
            raise BackendError(f"--shapes {profile.name}: H and W of {shape} are not multiples of {meta.size_divisor} "
                               "(the model's size_divisor)", "round them to multiples of it (the runtime pads images so)")
    if panoptic_batch_fixed and meta.task == "panoptic" and not (profile.min[0] == profile.max[0] == 1 or graph_dims[0] is not None):
        raise BackendError("a panoptic graph merges one image at a time: its batch cannot range",
                           f"use batch 1 in --shapes ({profile.name}:1x...)")


def check_int8_for_tensorrt(meta: ModelMeta, source: str | Path) -> None:
    """A Q/DQ graph quantized for ONNX Runtime on AVX2 keeps 7-bit weights (``reduce_range``): TensorRT would
    run it with a quarter of the weight levels thrown away. Refuse it, with the command that writes 8-bit."""
    if meta.precision == "int8" and meta.config.get("weight_bits") == 7:
        raise BackendError(f"{source} is an INT8 graph with 7-bit weights (quantized for ONNX Runtime on AVX2 CPUs)",
                           "quantize the FP32 model again for TensorRT: edgeseg quantize MODEL.onnx --target tensorrt "
                           "(8-bit weights, reduce_range=False)")


def check_precision(meta: ModelMeta, precision: str, source: str | Path, dla_core: int | None = None) -> None:
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision '{precision}'", f"use one of: {', '.join(PRECISIONS)}")
    if precision == "int8" and meta.precision != "int8":
        raise BackendError(f"INT8 engines are built from a Q/DQ ONNX; {source} is {meta.precision}",
                           "run 'edgeseg quantize MODEL.onnx --target tensorrt' first and build from its output")
    if meta.precision == "int8" and precision != "int8":
        raise BackendError(f"{source} is a Q/DQ INT8 graph; an engine of it is INT8", "build it with --precision int8")
    if precision == "int8":
        check_int8_for_tensorrt(meta, source)
    if dla_core is not None and precision == "fp32":
        raise BackendError("DLA runs FP16 and INT8 only", "build with --precision fp16 or int8 for --dla-core")


# ---------------------------------------------------------------- the build (needs TensorRT and a GPU)

def build_engine(onnx_path: str | Path | OnnxSource, out: str | Path, precision: str = "fp16",
                 shapes: Sequence[ShapeProfile] | str | None = None, workspace_mb: int = 2048,
                 timing_cache: str | Path | None = None, builder_optimization_level: int | None = None,
                 version_compatible: bool = False, hardware_compatible: bool = False, dla_core: int | None = None,
                 plugins: Sequence[str | Path] = ()) -> Path:
    """Parse ``onnx_path`` (a path, or the ``OnnxSource`` a caller has already read), build a serialized engine for
    ``precision`` and write it (and ``<out>.json``).

    Everything that can be checked without TensorRT is checked before it is imported."""
    source = onnx_path if isinstance(onnx_path, OnnxSource) else OnnxSource.read(onnx_path)
    onnx_path, proto, meta = source.path, source.proto, source.meta
    check_precision(meta, precision, onnx_path, dla_core)
    dims = graph_input_dims(proto)
    if meta.input_name not in dims:
        raise BackendError(f"{onnx_path} has no input '{meta.input_name}' (its metadata's input_name)", "re-export it with edgeseg")
    if isinstance(shapes, str):
        shapes = parse_shapes(shapes)
    profiles = list(shapes) if shapes else [derive_profile(meta, dims[meta.input_name])]
    for p in profiles:
        if p.name not in dims:
            raise BackendError(f"--shapes names '{p.name}', not an input of {onnx_path}", f"its inputs: {', '.join(dims)}")
        if p.name == meta.input_name:
            check_profile(p, meta, dims[p.name])
    if not 1 <= workspace_mb <= 1 << 20:
        raise BackendError(f"workspace {workspace_mb} MiB is outside 1..{1 << 20}", "choose e.g. --workspace 2048")
    if builder_optimization_level is not None and not 0 <= builder_optimization_level <= 5:
        raise BackendError(f"builder optimization level {builder_optimization_level} is outside 0..5", "use 0..5 (default 3)")
    libraries = build_plugin_libraries(proto, plugins)
    io = graph_io(proto)

    require_tensorrt()
    import tensorrt as trt

    cuda = init_cuda()
    gpu_name, capability = gpu_info(cuda)
    logger = trt.Logger(trt.Logger.WARNING)
    load_plugins(libraries, logger)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    # the graph already read, serialized for the parser (the path: where external weights are)
    if not parser.parse(proto.SerializeToString(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        standard = {n.op_type for n in proto.graph.node} & {"RoiAlign", "DeformConv"}
        fix = (f"export with --flavour tensorrt: {', '.join(sorted(standard))} become edgeseg plugin nodes" if standard
               else "check the opset and custom ops (plugins)")
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}", fix)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 graphs: the layers outside Q/DQ pairs may take FP16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from the Q/DQ nodes
    if builder_optimization_level is not None:
        config.builder_optimization_level = builder_optimization_level
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        # A version-compatible engine cannot rely on the plugin library of the runtime's TensorRT: ship it inside.
        config.plugins_to_serialize = [str(p) for p in libraries]
    if hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if dla_core is not None:
        if not 0 <= dla_core < builder.num_DLA_cores:
            raise BackendError(f"DLA core {dla_core} does not exist here ({builder.num_DLA_cores} DLA cores)",
                               "drop --dla-core, or run on a Jetson with DLA (Orin AGX/NX)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run stay on the GPU
    profile = builder.create_optimization_profile()
    for p in profiles:
        profile.set_shape(p.name, trt.Dims(list(p.min)), trt.Dims(list(p.opt)), trt.Dims(list(p.max)))
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        cache_file = Path(timing_cache)
        cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)  # a cache from another GPU/version is not used

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT failed to build the engine", "see the TensorRT log above")
    if timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(serialized))
    sidecar = {**asdict(meta), "precision": precision, "tensorrt_version": trt.__version__, "gpu": gpu_name,
               "compute_capability": list(capability), "shapes": [asdict(p) for p in profiles],
               "version_compatible": version_compatible, "hardware_compatible": hardware_compatible,
               "dla_core": dla_core, "bindings": io, "plugin_libraries": plugin_record(libraries)}
    write_text_atomic(str(out) + ".json", json.dumps(sidecar, indent=2))
    return Path(out)
