"""Running a TensorRT engine behind the Session protocol (TensorRT 10 Python API, pycuda for CUDA).

``TensorRTSession(target)`` takes an engine (``.engine``/``.plan`` with its ``<engine>.json`` sidecar) or an
edgeseg ``.onnx`` plus a precision: the ONNX goes through the engine cache (``cache.get_or_build``), so an
engine is built once per ONNX, TensorRT version, GPU, precision and profile, however many processes ask.

An engine has no room for edgeseg metadata, so the sidecar holds the ONNX metadata plus the TensorRT
version, GPU name and compute capability it was built for; an engine from another version or GPU is refused
in one line before TensorRT deserializes it (a version-compatible engine is let through to the lean runtime,
a hardware-compatible one to any Ampere-or-newer GPU). Plugin libraries are decided and hash-checked before
anything is loaded (``build.resolve_plugin_libraries``) and loaded once per process.

Run: I/O dtypes come from the engine (FP16 inputs get FP16, int32/int64 outputs stay integers);
``set_input_shape`` is checked; page-locked host and device buffers are allocated once per tensor and grown
only for a bigger shape; one CUDA stream; optionally (``cuda_graph=True``, for fixed shapes) the enqueue is
captured as a CUDA graph per input shape and replayed (through cuda-python: pycuda has no graph API). ``close()`` tears down in order: graphs, context, engine, runtime,
buffers, stream, then the CUDA context is popped.

Asynchronous runs (``submit(batch)`` -> ``PendingRun``; ``.result()`` waits) for a caller that keeps two frames in
flight from two threads (``edgeseg.runtime.stream``'s inference stage): each in-flight run has its own slot of
page-locked host and device buffers; the upload runs on a copy stream, the engine on the compute stream (after an
event says the upload is done), the download on a third stream, so frame n+1's upload and frame n's download overlap
frame n's and n+1's compute. ``run`` stays synchronous; the session starts no thread. Every call makes the session's
CUDA context current in the calling thread (pycuda.autoinit makes it current only in the thread that opened it).
"""
from __future__ import annotations

import contextlib
import json
import queue
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeseg.errors import BackendError
from edgeseg.export.metadata import MAX_FIELD_BYTES, ModelMeta
from edgeseg.io import atomic_path
from edgeseg.runtime.base import check_batch
from edgeseg.runtime.tensorrt.build import (OnnxSource, build_engine, build_plugin_libraries, check_precision,
                                            derive_profile, gpu_info, graph_input_dims, init_cuda, load_plugins,
                                            require_tensorrt, resolve_plugin_libraries)
from edgeseg.runtime.tensorrt.cache import EngineKey, ShapeProfile, get_or_build, sha256_file

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
AMPERE = (8, 0)


def read_engine_sidecar(sidecar: Path) -> dict:
    """``<engine>.json`` as a dict, refusing what is not small, valid JSON (it is untrusted input)."""
    fix = "rebuild the engine with edgeseg (edgeseg build) so its sidecar is rewritten"
    if sidecar.stat().st_size > MAX_FIELD_BYTES:
        raise BackendError(f"engine sidecar {sidecar} is over {MAX_FIELD_BYTES} bytes", fix)
    try:
        info = json.loads(sidecar.read_bytes())
    except (ValueError, RecursionError):
        raise BackendError(f"engine sidecar {sidecar} is not valid JSON", fix) from None
    if not isinstance(info, dict):
        raise BackendError(f"engine sidecar {sidecar} is not a JSON object", fix)
    return info


def check_engine_compatible(info: dict, engine: str | Path, tensorrt_version: str, gpu_name: str,
                            compute_capability: tuple[int, int]) -> None:
    """Refuse, in one line, an engine built for another TensorRT version or GPU (what its sidecar records).

    A version-compatible engine runs on a later TensorRT (same major); a hardware-compatible one on any GPU
    of compute capability 8.0 or newer."""
    fix = f"rebuild it here from the ONNX file: edgeseg build MODEL.onnx --out {Path(engine).name}"
    built_version = str(info.get("tensorrt_version"))
    built_gpu = str(info.get("gpu"))
    cc = info.get("compute_capability")
    built_cc = tuple(cc) if isinstance(cc, list) and len(cc) == 2 and all(isinstance(v, int) for v in cc) else None
    if built_version != tensorrt_version:
        same_major = built_version.split(".")[0] == tensorrt_version.split(".")[0]
        if not (info.get("version_compatible") is True and same_major and _version(built_version) <= _version(tensorrt_version)):
            raise BackendError(f"{engine} was built with TensorRT {built_version}, this is TensorRT {tensorrt_version}", fix)
    if info.get("hardware_compatible") is True:
        if compute_capability < AMPERE:
            raise BackendError(f"{engine} is hardware-compatible from Ampere (8.0) on; this GPU ({gpu_name}) is "
                               f"{compute_capability[0]}.{compute_capability[1]}", fix)
        return
    if built_gpu != gpu_name or (built_cc is not None and built_cc != tuple(compute_capability)):
        where = f"{built_gpu}" + (f" (sm_{built_cc[0]}{built_cc[1]})" if built_cc else "")
        raise BackendError(f"{engine} was built for {where}, this GPU is {gpu_name} "
                           f"(sm_{compute_capability[0]}{compute_capability[1]})", fix)


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (1 << 30,)  # unparseable: never "older"


def engine_for_onnx(onnx_path: str | Path, precision: str | None, cuda, shapes: list[ShapeProfile] | None = None,
                    plugins: tuple[str, ...] = (), cache_folder: str | Path | None = None, **build_options) -> Path:
    """The cached engine of ``onnx_path`` at ``precision`` (default: the ONNX file's own, so an FP16 or Q/DQ INT8
    file builds an FP16 or INT8 engine) for this TensorRT and GPU, built if absent."""
    import tensorrt as trt

    source = OnnxSource.read(onnx_path)  # read once: its graph and metadata go down to the build
    proto, meta = source.proto, source.meta
    precision = precision or meta.precision
    check_precision(meta, precision, onnx_path, build_options.get("dla_core"))
    if shapes is None:
        shapes = [derive_profile(meta, graph_input_dims(proto)[meta.input_name])]
    libraries = build_plugin_libraries(proto, plugins)
    gpu_name, capability = gpu_info(cuda)
    key = EngineKey(onnx_sha256=sha256_file(source.path), tensorrt_version=trt.__version__, gpu_name=gpu_name,
                    compute_capability=capability, precision=precision, shapes=tuple(shapes),
                    plugin_sha256=tuple(sha256_file(p) for p in libraries),
                    options=tuple(sorted((k, json.dumps(v)) for k, v in build_options.items()
                                         if k not in ("workspace_mb", "timing_cache"))))
    return get_or_build(key, lambda tmp: build_engine(source, tmp, precision, shapes=shapes,
                                                      plugins=tuple(str(p) for p in libraries), **build_options),
                        cache_folder)


class CudaGraph:
    """One enqueue captured on a stream and replayed (pycuda has no graph API: cuda-python's runtime calls on
    the raw stream handle, inside the context pycuda made current)."""

    def __init__(self, stream_handle: int, enqueue) -> None:
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            raise BackendError("CUDA graphs need cuda-python", "pip install cuda-python, or run without cuda_graph") from None
        self.rt, self.stream = rt, stream_handle
        self.graph = self.exec = None
        self._check(rt.cudaStreamBeginCapture(stream_handle, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)[0],
                    "begin capture")
        try:
            enqueue()
        finally:
            err, self.graph = rt.cudaStreamEndCapture(stream_handle)
        self._check(err, "end capture")
        err, self.exec = rt.cudaGraphInstantiate(self.graph, 0)
        self._check(err, "instantiate")

    def _check(self, err, what: str) -> None:
        if err != self.rt.cudaError_t.cudaSuccess:
            self.close()
            raise BackendError(f"CUDA graph {what} failed ({err})", "run the session without cuda_graph")

    def launch(self) -> None:
        err = self.rt.cudaGraphLaunch(self.exec, self.stream)[0]
        if err != self.rt.cudaError_t.cudaSuccess:
            raise BackendError(f"CUDA graph launch failed ({err})", "run the session without cuda_graph")

    def close(self) -> None:
        if self.exec is not None:
            self.rt.cudaGraphExecDestroy(self.exec)
            self.exec = None
        if self.graph is not None:
            self.rt.cudaGraphDestroy(self.graph)
            self.graph = None


class TensorRTSession:
    backend = "tensorrt"

    def __init__(self, target: str | Path, precision: str | None = None, plugin_libraries: tuple[str, ...] = (),
                 shapes: list[ShapeProfile] | None = None, cache_folder: str | Path | None = None,
                 cuda_graph: bool = False, warmup: int = 1, **build_options: Any):
        require_tensorrt()
        import tensorrt as trt

        self._closed = True
        target = Path(target)
        if not target.is_file():
            raise BackendError(f"not found: {target}", "pass an engine (edgeseg build) or an edgeseg .onnx")
        cuda = init_cuda()
        if target.suffix.lower() == ".onnx":
            target = engine_for_onnx(target, precision, cuda, shapes, tuple(plugin_libraries), cache_folder, **build_options)
        sidecar = Path(str(target) + ".json")
        if not sidecar.is_file():
            raise BackendError(f"{target} has no {sidecar.name} beside it", "build engines with edgeseg so their metadata travels along")
        info = read_engine_sidecar(sidecar)
        # Decided (and hashed) before any library is loaded or the engine is read.
        libraries = resolve_plugin_libraries(info.get("plugin_libraries", []), tuple(plugin_libraries))
        gpu_name, capability = gpu_info(cuda)
        check_engine_compatible(info, target, trt.__version__, gpu_name, capability)
        fields = set(ModelMeta.__dataclass_fields__)
        self.meta = ModelMeta.validated({k: v for k, v in info.items() if k in fields}, f"engine sidecar {sidecar}", BackendError)
        self.precision = self.meta.precision
        self.trt = trt
        self.cuda = cuda
        self.logger = trt.Logger(trt.Logger.WARNING)
        load_plugins(libraries, self.logger)
        self.runtime = trt.Runtime(self.logger)
        if info.get("version_compatible") is True:
            self.runtime.engine_host_code_allowed = True  # the lean runtime shipped inside the engine
        self.engine = self.runtime.deserialize_cuda_engine(target.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT refused {target} (corrupt or incompatible)", "rebuild the engine from the ONNX file")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"TensorRT could not create an execution context for {target}", "free GPU memory and retry")
        import pycuda.autoinit

        self.cuda_context = pycuda.autoinit.context
        self.stream = cuda.Stream()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if self.inputs != [self.meta.input_name]:
            raise BackendError(f"{target} has inputs {self.inputs}, its sidecar says '{self.meta.input_name}'",
                               "rebuild the engine with edgeseg")
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in self.names}
        self._host: dict[str, np.ndarray] = {}  # page-locked, flat, grown only for bigger shapes
        self._device: dict[str, tuple[int, Any]] = {}
        self._graphs: dict[tuple[int, ...], CudaGraph] = {}
        self.cuda_graph = cuda_graph
        self._copy_in, self._copy_out = cuda.Stream(), cuda.Stream()  # submit(): uploads and downloads
        self._slots: list[_Slot] = [_Slot(self) for _ in range(2)]
        self._free: queue.Queue[_Slot] = queue.Queue()
        for slot in self._slots:
            self._free.put(slot)
        self._enqueue_lock = threading.Lock()  # the context's shapes, addresses and enqueue: one caller at a time
        self._closed = False
        profile = info.get("shapes")
        if warmup > 0 and isinstance(profile, list) and profile and isinstance(profile[0], dict):
            opt = profile[0].get("opt")
            if isinstance(opt, list) and all(isinstance(d, int) and 0 < d <= 8192 for d in opt):
                for _ in range(warmup):
                    self.run(np.zeros(opt, np.uint8 if self.meta.io == "frames" else np.float32))  # deploy graphs: frames

    # ---------------------------------------------------------------- buffers

    def _buffers(self, name: str, shape: tuple[int, ...], slot: "_Slot | None" = None) -> tuple[np.ndarray, Any]:
        """A page-locked host view of ``shape`` and the device buffer behind it, reallocated only to grow (``slot``:
        an asynchronous run's own buffers, else the synchronous run's)."""
        hosts, devices = (slot.host, slot.device) if slot is not None else (self._host, self._device)
        dtype = self.dtypes[name]
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size, device = devices.get(name, (0, None))
        if size < nbytes or device is None:
            if device is not None:
                device.free()
            device = self.cuda.mem_alloc(max(nbytes, 1))
            devices[name] = (nbytes, device)
            hosts[name] = self.cuda.pagelocked_empty(max(nbytes // dtype.itemsize, 1), dtype)
            if slot is None:
                for graph in self._graphs.values():  # captured graphs hold the old addresses
                    graph.close()
                self._graphs.clear()
        host = hosts[name][: nbytes // dtype.itemsize].reshape(shape)
        return host, device

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        """The session's CUDA context, current in this thread for the block (pushed where it is not)."""
        pushed = self.cuda.Context.get_current() != self.cuda_context
        if pushed:
            self.cuda_context.push()
        try:
            yield
        finally:
            if pushed:
                self.cuda.Context.pop()

    def _bind(self, batch: np.ndarray, slot: "_Slot | None" = None) -> tuple[np.ndarray, Any, dict[str, tuple[np.ndarray, Any]]]:
        """Set the input shape, resolve the output shapes, and point the context at (``slot``'s) buffers: the input's
        host view and device buffer, and each output's."""
        name_in = self.meta.input_name
        if not self.context.set_input_shape(name_in, tuple(batch.shape)):
            lo, opt, hi = self.engine.get_tensor_profile_shape(name_in, 0)
            raise BackendError(f"input shape {tuple(batch.shape)} is outside the engine's profile "
                               f"(min {tuple(lo)}, opt {tuple(opt)}, max {tuple(hi)})",
                               "resize the input into that range, or build an engine with --shapes covering it")
        missing = self.context.infer_shapes()
        if missing:
            raise BackendError(f"TensorRT cannot infer the shapes of {missing} from input {tuple(batch.shape)}",
                               "check the input shape against the engine's profile")
        host_in, dev_in = self._buffers(name_in, tuple(batch.shape), slot)
        host_in[...] = batch.astype(self.dtypes[name_in], copy=False)  # FP16-input engines take FP16
        self.context.set_tensor_address(name_in, int(dev_in))
        outs = {}
        for name in self.outputs:
            dims = self.context.get_tensor_shape(name)
            shape = tuple(dims[i] for i in range(len(dims)))
            if any(d < 0 for d in shape):
                raise BackendError(f"output {name} has an unresolved shape {shape}", "rebuild the engine with edgeseg")
            outs[name] = self._buffers(name, shape, slot)
            self.context.set_tensor_address(name, int(outs[name][1]))
        return host_in, dev_in, outs

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.handle):
            raise BackendError("TensorRT execution failed", "check the input shape against the engine's profile")

    # ---------------------------------------------------------------- run

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._closed:
            raise BackendError("this TensorRT session is closed", "open a new session")
        batch = check_batch(batch, self.meta)
        with self._current(), self._enqueue_lock:
            host_in, dev_in, outs = self._bind(batch)
            self.cuda.memcpy_htod_async(dev_in, host_in, self.stream)
            key = tuple(batch.shape)
            if self.cuda_graph:
                graph = self._graphs.get(key)
                if graph is None:
                    self._enqueue()  # the first run of a shape sets TensorRT's own state up outside capture
                    graph = CudaGraph(self.stream.handle, self._enqueue)
                    self._graphs[key] = graph
                graph.launch()
            else:
                self._enqueue()
            for name, (host, device) in outs.items():
                self.cuda.memcpy_dtoh_async(host, device, self.stream)
            self.stream.synchronize()
            return _copy_outputs(outs)

    def submit(self, batch: np.ndarray) -> "PendingRun":
        """Start a run and return at once; ``.result()`` of what it returns waits for the outputs (call it: the run
        holds one of two buffer slots until then, and a third ``submit`` waits for a slot). The upload runs on its own
        stream, so it overlaps the compute of a run submitted before; the engine waits for it by an event."""
        if self._closed:
            raise BackendError("this TensorRT session is closed", "open a new session")
        batch = check_batch(batch, self.meta)
        slot = self._free.get()
        try:
            with self._current(), self._enqueue_lock:
                host_in, dev_in, outs = self._bind(batch, slot)
                self.cuda.memcpy_htod_async(dev_in, host_in, self._copy_in)
                slot.uploaded.record(self._copy_in)
                self.stream.wait_for_event(slot.uploaded)
                self._enqueue()
                slot.computed.record(self.stream)
                self._copy_out.wait_for_event(slot.computed)
                for host, device in outs.values():
                    self.cuda.memcpy_dtoh_async(host, device, self._copy_out)
                slot.downloaded.record(self._copy_out)
        except BaseException:
            self._free.put(slot)
            raise
        return PendingRun(self, slot, outs)

    # ---------------------------------------------------------------- per-layer time

    def profile_layers(self, batch: np.ndarray, warmup: int = 2, runs: int = 10) -> dict[str, tuple[str, float]]:
        """Per-layer GPU time of ``runs`` runs of ``batch`` after ``warmup``: {engine layer: (layer type, ms summed
        over the runs)}. A ``trt.IProfiler`` reports each layer's time; it is attached to a second execution context,
        swapped in for this pass only (without CUDA graphs), so the session's own context is never profiled and
        its timing stays clean. Layer types come from the engine inspector's JSON (an engine built with
        ProfilingVerbosity.DETAILED lists them; otherwise the type is "?")."""
        import tensorrt as trt

        class LayerTimes(trt.IProfiler):
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.recording = False
                self.ms: dict[str, float] = {}

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                if self.recording:
                    self.ms[layer_name] = self.ms.get(layer_name, 0.0) + ms

        context = self.engine.create_execution_context()
        if context is None:
            raise BackendError("TensorRT could not create a second execution context to profile", "free GPU memory and retry")
        times = LayerTimes()
        context.profiler = times
        timed, graphs = self.context, self.cuda_graph
        self.context, self.cuda_graph = context, False
        try:
            for i in range(warmup + runs):
                times.recording = i >= warmup
                self.run(batch)  # enqueue_emits_profile (the default): the layer times are reported by each run
        finally:
            self.context, self.cuda_graph = timed, graphs
            del context
        try:
            info = json.loads(self.engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
        except ValueError:
            info = {}
        layers = info.get("Layers", []) if isinstance(info, dict) else []
        kinds = {str(x.get("Name")): str(x.get("LayerType", "?")) for x in layers if isinstance(x, dict)}
        return {name: (kinds.get(name, "?"), ms) for name, ms in times.ms.items()}

    # ---------------------------------------------------------------- teardown

    def close(self) -> None:
        """Graphs, context, engine, runtime, then the buffers and the stream (TensorRT objects must go before
        the memory they point at, and all before the CUDA context pycuda pops at exit)."""
        if self._closed:
            return
        self._closed = True
        for stream in (self.stream, self._copy_in, self._copy_out):
            stream.synchronize()
        for graph in self._graphs.values():
            graph.close()
        self._graphs.clear()
        del self.context
        del self.engine
        del self.runtime
        for devices in [self._device] + [slot.device for slot in self._slots]:
            for _size, device in devices.values():
                device.free()
            devices.clear()
        self._host.clear()
        self._slots.clear()
        del self.stream, self._copy_in, self._copy_out

    def __enter__(self) -> "TensorRTSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the CUDA context may already be gone
            pass


def _copy_outputs(outs: dict[str, tuple[np.ndarray, Any]]) -> dict[str, np.ndarray]:
    """Floating outputs as float32 (FP16 engines' outputs included); integer outputs keep their type. Copies: the
    page-locked buffers are reused by the next run."""
    return {name: host.astype(np.float32) if host.dtype.kind == "f" else host.copy() for name, (host, _) in outs.items()}


class _Slot:
    """One in-flight asynchronous run's page-locked host and device buffers and the events that order its copies."""

    def __init__(self, session: TensorRTSession) -> None:
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, tuple[int, Any]] = {}
        self.uploaded, self.computed, self.downloaded = (session.cuda.Event() for _ in range(3))


class PendingRun:
    """A run started by ``TensorRTSession.submit``: ``result()`` waits for its download and returns its outputs."""

    def __init__(self, session: TensorRTSession, slot: _Slot, outs: dict[str, tuple[np.ndarray, Any]]) -> None:
        self.session, self.outs = session, outs
        self.slot: _Slot | None = slot
        self._result: dict[str, np.ndarray] | None = None

    def result(self) -> dict[str, np.ndarray]:
        if self.slot is not None:  # the first call waits, copies and gives the slot back
            slot, self.slot = self.slot, None
            try:
                with self.session._current():
                    slot.downloaded.synchronize()
                self._result = _copy_outputs(self.outs)
            finally:
                self.session._free.put(slot)
        if self._result is None:
            raise BackendError("this TensorRT run failed (see the first error)", "submit the batch again")
        return self._result


def write_engine_copy(engine: Path, out: str | Path) -> Path:
    """Copy a cached engine and its sidecar to ``out`` (atomic), e.g. to ship it."""
    with atomic_path(str(out) + ".json") as tmp:
        tmp.write_bytes(Path(str(engine) + ".json").read_bytes())
    with atomic_path(out) as tmp:
        tmp.write_bytes(engine.read_bytes())
    return Path(out)
