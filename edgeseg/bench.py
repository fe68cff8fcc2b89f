"""Benchmarks: models × backends × precisions at one input size.

Per variant: latency median/p90 (ms per batch), throughput, the peak memory the first run of a fresh
session adds (activations, arenas; weights are the model size), model file size,
argmax agreement with PyTorch, and mIoU where a data set is given. The variants of one model are
timed round-robin in one process (one run of each per round), so they share the machine's state
and their ratios are fair; OMP_WAIT_POLICY=PASSIVE and ORT's allow_spinning=0 keep one backend's
idle threads from stealing the cores of the next (see DESIGN.md's timing rules). GPU variants (tensorrt,
torch-cuda*) wait for the device inside each timed call. With ``profile`` each variant's per-layer time is
measured after the timed runs, in a pass of its own (``profile_variant``).
"""
from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from edgeseg.errors import EdgeSegError
from edgeseg.io import write_text_atomic
from edgeseg.runtime import Session, open_session

DEFAULT_VARIANTS = ("torch:fp32", "onnxruntime:fp32", "onnxruntime:int8")
# PyTorch: eager on the CPU (the reference), torch.compile on the CPU, eager and compiled on a CUDA device.
TORCH_BACKENDS = ("torch", "torch-compile", "torch-cuda", "torch-cuda-compile")
BENCH_BACKENDS = (*TORCH_BACKENDS, "onnxruntime", "tensorrt")
PROFILE_TOP = 10  # rows of the per-layer tables (op types, layers) a --profile report keeps per variant


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


def _read_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def first_run_peak_mb(session: Session, batch: np.ndarray) -> float | None:
    """Peak resident memory the first run of a fresh session adds (activations, arenas, workspace),
    above what the process held before it. Linux only (else None). Call before any other run of the
    session: later runs reuse what the first one allocated. PyTorch on a CUDA device: the device memory the
    first run adds (the caching allocator's peak above what it held)."""
    import ctypes

    device = str(getattr(session, "device", ""))
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        session.run(batch)
        return max(0, torch.cuda.max_memory_allocated(device) - before) / 2**20

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand memory freed by earlier sessions back, so it is not reused
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the VmHWM high-water mark
        before = _read_kb("VmRSS")
        session.run(batch)
        return max(0, _read_kb("VmHWM") - before) / 1024
    except OSError:
        return None


def time_callables(fns: dict[str, Callable[[], object]], warmup: int, repeats: int, progress: bool = False,
                   sync: Callable[[], object] = lambda: None) -> dict[str, list[float]]:
    """Milliseconds per call of each function, timed round-robin after ``warmup`` calls each (side by side,
    so drifting clocks and neighbours affect all alike). ``sync`` waits for queued GPU work."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in tqdm(range(repeats), desc="timing", leave=False, disable=not progress):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[k].append((time.perf_counter() - t0) * 1000)
    return times


def time_round_robin(sessions: dict[str, Session], batch: np.ndarray, warmup: int, repeats: int,
                     progress: bool = False) -> dict[str, list[float]]:
    return time_callables({k: functools.partial(s.run, batch) for k, s in sessions.items()}, warmup, repeats, progress)


def profile_variant(session: Session, batch: np.ndarray, warmup: int, runs: int, top: int = PROFILE_TOP) -> dict:
    """Where a variant's time goes: ``runs`` runs of ``batch`` after ``warmup`` under the backend's own profiler, in
    a pass of their own (never during the timed runs: profilers add overhead). ONNX Runtime: its profiler
    (``SessionOptions.enable_profiling``) on a second session of the same file, kernel time per node; TensorRT:
    an ``IProfiler`` on a second execution context (``TensorRTSession.profile_layers``), per engine layer, types
    from the engine inspector; PyTorch: ``torch.profiler``'s self time per aten op (op types only: eager PyTorch
    has no layer names). Returns the ``top`` op types and layers by mean time per run, with their share of the
    profiled layers' sum."""
    if session.backend == "onnxruntime":
        tool, layers = "ONNX Runtime profiler, kernel time per node", _onnxruntime_layers(session, batch, warmup, runs)
    elif session.backend == "tensorrt":
        tool, layers = "TensorRT IProfiler, time per engine layer", session.profile_layers(batch, warmup, runs)  # type: ignore[attr-defined]
    else:
        tool, layers = "torch.profiler, self time per op", _torch_layers(session, batch, warmup, runs)
    per_run = {name: (op, ms / runs) for name, (op, ms) in layers.items()}
    total = sum(ms for _, ms in per_run.values())
    ops: dict[str, list] = {}
    for op, ms in per_run.values():
        ops.setdefault(op, [0.0, 0])
        ops[op][0] += ms
        ops[op][1] += 1
    share = (lambda ms: ms / total) if total > 0 else (lambda ms: 0.0)
    by_op = sorted(ops.items(), key=lambda kv: -kv[1][0])[:top]
    per_layer = session.backend in ("onnxruntime", "tensorrt")  # torch.profiler has ops, not layers
    by_layer = sorted(per_run.items(), key=lambda kv: -kv[1][1])[:top] if per_layer else []
    return {"tool": tool, "runs": runs, "layers_ms": total, "layer_count": len(per_run) if per_layer else None,
            "op_types": [{"op": op, "ms": ms, "share": share(ms), "layers": n if per_layer else None} for op, (ms, n) in by_op],
            "layers": [{"name": name, "op": op, "ms": ms, "share": share(ms)} for name, (op, ms) in by_layer]}


def _onnxruntime_layers(session, batch: np.ndarray, warmup: int, runs: int) -> dict[str, tuple[str, float]]:
    """{node: (op type, ms summed over ``runs``)} from ONNX Runtime's profile of a second session (the timed one is
    never profiled); warm-up runs are left out by the profile's own run windows ("model_run" events)."""
    from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSession

    with tempfile.TemporaryDirectory() as tmp:
        profiled = OnnxRuntimeSession(session.path, session.session.get_providers(),
                                      custom_op_libraries=session.custom_op_libraries,
                                      profile_prefix=str(Path(tmp) / "ort_profile"))
        for _ in range(warmup + runs):
            profiled.run(batch)
        events = json.loads(Path(profiled.session.end_profiling()).read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                     if e.get("cat") == "Session" and e.get("name") == "model_run")[-runs:]
    layers: dict[str, tuple[str, float]] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time") or not any(a <= e["ts"] <= b for a, b in windows):
            continue
        node = name[: -len("_kernel_time")]
        op, ms = layers.get(node, (str(e.get("args", {}).get("op_name", "?")), 0.0))
        layers[node] = (op, ms + e["dur"] / 1000)
    return layers


def _torch_layers(session, batch: np.ndarray, warmup: int, runs: int) -> dict[str, tuple[str, float]]:
    """{aten op: (op, self ms summed over ``runs``)}: device time on CUDA, CPU time on the CPU."""
    from torch.profiler import ProfilerActivity, profile

    cuda = str(getattr(session, "device", "cpu")).startswith("cuda")
    for _ in range(warmup):
        session.run(batch)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(runs):
            session.run(batch)
    layers = {}
    for e in prof.key_averages():
        us = e.self_device_time_total if cuda else e.self_cpu_time_total
        if us > 0:
            layers[e.key] = (e.key, us / 1000)
    return layers


def variant_file(fp32: Path, backend: str, precision: str, calibration: list[np.ndarray], calib_method: str) -> Path:
    """The ONNX file a variant runs, derived from ``fp32`` beside it once: FP16 by conversion, INT8 as a Q/DQ graph
    (7-bit weights for ONNX Runtime on AVX2; 8-bit for TensorRT, whose build refuses 7). TensorRT FP16 builds
    from the FP32 graph."""
    from edgeseg.quant import convert_fp16, quantize_int8

    if precision == "fp32" or (backend == "tensorrt" and precision == "fp16"):
        return fp32
    path = fp32.with_name(f"{fp32.stem}_{precision}{'_trt' if backend == 'tensorrt' else ''}.onnx")
    if not path.exists():
        if precision == "fp16":
            convert_fp16(fp32, path)
        else:
            quantize_int8(fp32, path, calibration, calib_method, reduce_range=backend != "tensorrt")
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


def agreement(reference: Session, candidate: Session, batches: list[tuple[np.ndarray, np.ndarray | None]],
              precision: str) -> tuple[float, str]:
    """Agreement of a variant's decisions with the reference's, through ``parity.compare`` (so the metadata's
    decision applies): argmax (softmax), thresholded foreground (sigmoid), matched-mask IoU (instance) or
    segment-id agreement (panoptic). Returns (value, kind)."""
    from edgeseg.parity import compare

    r = compare(reference, candidate, batches, precision)
    return {"binary": (r.foreground_agreement, "foreground"), "instance": (r.mask_agreement, "mask"),
            "panoptic": (r.id_agreement, "segment id")}.get(r.kind, (r.argmax_agreement, "argmax"))


def accuracy(session: Session, dataset) -> dict:
    """The task's accuracy on ``dataset``: mIoU (softmax), foreground IoU (sigmoid: mean IoU of the foreground
    classes, as ``edgeseg eval`` prints it per class), mask AP (instance) or PQ (panoptic)."""
    from edgeseg.evaluate import evaluate, evaluate_instances, evaluate_panoptic

    meta = session.meta
    if meta.task == "instance":
        s = evaluate_instances(session, dataset, progress=False)
        return {"accuracy_metric": "mask AP", "accuracy": s["segm"].ap, "mask_ap50": s["segm"].ap50, "box_ap": s["bbox"].ap}
    if meta.task == "panoptic":
        s = evaluate_panoptic(session, dataset, progress=False)
        return {"accuracy_metric": "PQ", "accuracy": s["panoptic"].pq, "miou": s["semantic"].miou}
    s = evaluate(session, dataset, progress=False)
    if meta.output_kind == "softmax":
        return {"accuracy_metric": "mIoU", "accuracy": s.miou, "miou": s.miou}
    return {"accuracy_metric": "foreground IoU", "accuracy": float(np.nanmean(s.per_class_iou[1:])), "miou": s.miou}


def predictions(session: Session, dataset, indices: list[int]) -> list:
    """The variant's decision on each of ``indices``: an H×W label map (semantic), the detections (instance)."""
    from edgeseg.metrics.instance import detections
    from edgeseg.runtime import labels_from_outputs, preprocess

    meta, out = session.meta, []
    for i in indices:
        x, size = preprocess(dataset.raw(i)[0], meta)
        y = session.run(x)
        if meta.task == "instance":
            out.append(detections(y, 0, size))
        elif meta.task == "panoptic":
            out.append(y["panoptic"][0, : size[0], : size[1]])
        else:
            out.append(labels_from_outputs(y, meta, size)[0])
    return out


def measure(sessions: dict[str, Session], files: dict[str, Path], meta, batch: np.ndarray, warmup: int, repeats: int,
            reference: Session | None = None, reference_name: str | None = None, dataset=None,
            check_batches: list | None = None, examples: list[int] = (), progress: bool = True,
            model_mb: float | None = None, profile: bool = False) -> tuple[list[dict], dict]:
    """One row per variant of one model, timed round-robin; with ``dataset`` its accuracy, and the predictions on
    the ``examples`` indices (second return value, by variant). Agreement is against ``reference`` on
    ``check_batches`` (default: the timed batch). ``profile``: each row's ``profile`` is its per-layer time
    (``profile_variant``), measured in a pass of its own after the timed runs."""
    from edgeseg.runtime.prepost import batch_size_hw

    height, width = batch_size_hw(batch, meta)
    peaks = {v: first_run_peak_mb(s, batch) for v, s in sessions.items()}
    power = _power_sampler()
    with power if power is not None else contextlib.nullcontext():
        times = time_round_robin(sessions, batch, warmup, repeats, progress)
    profiles = {v: profile_variant(s, batch, warmup, repeats) for v, s in sessions.items()} if profile else {}
    checks = check_batches or [(batch, None)]
    rows, shown = [], {}
    for v, s in sessions.items():
        backend, precision = parse_variant(v)
        t = np.asarray(times[v])
        agree, kind = agreement(reference, s, checks, precision) if reference is not None else (None, None)
        row = {
            "model": meta.model, "task": meta.task, "output_kind": meta.output_kind, "backend": backend,
            "precision": precision, "batch": int(batch.shape[0]), "height": int(height), "width": int(width),
            "latency_ms_median": float(np.median(t)), "latency_ms_p90": float(np.percentile(t, 90)),
            "throughput_ips": float(batch.shape[0] * 1000 / np.median(t)), "runs": len(t),
            "first_run_peak_mb": peaks[v],
            "model_mb": files[v].stat().st_size / 1e6 if v in files else model_mb,
            "agreement": agree, "agreement_kind": kind, "agreement_reference": reference_name if reference else None,
            "agreement_vs_torch": agree if reference_name == "torch:fp32" else None,
            "accuracy_metric": None, "accuracy": None, "miou": None,
        }
        if v in profiles:
            row["profile"] = profiles[v]
        if dataset is not None:
            row.update(accuracy(s, dataset))
            if examples:
                shown[v] = predictions(s, dataset, list(examples))
        if power is not None and len(sessions) == 1:  # one variant timed: the power is its own
            row.update(power.summary().fields(row["throughput_ips"]))
        rows.append(row)
    t_ref = next((r["latency_ms_median"] for r in rows if r["backend"] == "torch"), None)
    for r in rows:
        r["speedup_vs_torch"] = t_ref / r["latency_ms_median"] if t_ref else None
    return rows, shown


def _power_sampler():
    """With EDGESEG_POWER_INTERVAL_MS set (scripts/jetson/bench.sh), tegrastats samples the input power while the
    variants are timed; a run of one variant gets power_w_mean/max and fps_per_watt in its row."""
    ms = os.environ.get("EDGESEG_POWER_INTERVAL_MS")
    if not ms:
        return None
    from edgeseg.deploy.jetson import PowerSampler

    return PowerSampler(int(ms))


def bench_model(model, meta, variants, size: tuple[int, int], batch_size: int, workdir: Path,
                calibration: list[np.ndarray], calib_method: str = "minmax", dataset=None, warmup: int = 2,
                repeats: int = 10, progress: bool = True, exporter: str = "dynamo", batch: np.ndarray | None = None,
                profile: bool = False) -> list[dict]:
    """One row per variant of a PyTorch model. ``batch`` (default: random normal at ``size``) is what is timed; pass a
    real image for detectors, whose cost depends on what they find. Agreement with PyTorch and accuracy on
    ``dataset`` as ``measure`` gives them."""
    if batch is None:
        batch = np.random.default_rng(0).standard_normal((batch_size, meta.in_channels, *size)).astype(np.float32)
    sessions, files = build_variants(model, meta, variants, workdir, calibration, calib_method, exporter)
    params_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    rows, _ = measure(sessions, files, meta, batch, warmup, repeats, sessions.get("torch:fp32"), "torch:fp32", dataset,
                      progress=progress, model_mb=params_mb, profile=profile)
    del sessions
    gc.collect()
    return rows


def run_bench(models: list[str], variants=DEFAULT_VARIANTS, size=(512, 512), batch_size: int = 1,
              num_classes: int = 21, in_channels: int = 3, calib_images: int = 4, calib_method: str = "minmax",
              warmup: int = 2, repeats: int = 10, workdir: str | Path | None = None, progress: bool = True,
              log=print, profile: bool = False) -> dict:
    """Random-initialised zoo models (latency only; accuracy needs a trained checkpoint: bench_checkpoint). Variants
    that cannot run here (TensorRT, CUDA) are left out with a note."""
    import torch

    from edgeseg.data.synthetic import make_scene, synthetic_info
    from edgeseg.export import default_meta
    from edgeseg.models import create, list_models

    variants, notes = runnable_variants(variants)
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise EdgeSegError(f"unknown model(s): {', '.join(unknown)}", "run 'edgeseg zoo' to list them")
    info = synthetic_info(num_classes)
    calibration = []
    for i in range(calib_images):
        image = make_scene(10_000 + i, size[0], size[1], num_classes)[0][:in_channels]
        calibration.append(((image - np.float32(0.5)) / np.float32(0.25))[None].astype(np.float32))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in models:
            log(f"[bench] {name}")
            torch.manual_seed(0)
            model = create(name, num_classes=num_classes, in_channels=in_channels).eval()
            meta = default_meta(model)
            meta.class_names, meta.mean, meta.std = list(info.class_names), [0.5] * in_channels, [0.25] * in_channels
            rows += bench_model(model, meta, variants, size, batch_size, work, calibration, calib_method,
                                warmup=warmup, repeats=repeats, progress=progress, profile=profile)
            for f in work.glob(f"{name}*.onnx"):
                f.unlink()
    for n in notes:
        log(f"note: {n}")
    return {"machine": machine(), "size": list(size), "batch": batch_size, "rows": rows, "notes": notes}


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def _resolve(item: str | Path, data: str) -> dict:
    """What one item of ``edgeseg bench`` is: an ONNX file (edgeseg's, or foreign with its sidecar), an engine, a
    checkpoint, or a zoo name (random weights, sized to ``data``'s classes and channels)."""
    import torch

    from edgeseg.export import default_meta
    from edgeseg.models import create, list_models
    from edgeseg.runtime import meta_from_checkpoint_dict, open_session

    text = str(item)
    suffix = Path(text).suffix.lower()
    if suffix == ".onnx":
        return {"label": Path(text).name, "kind": "onnx", "path": Path(text), "model": None, "meta": open_session(text).meta}
    if suffix in ENGINE_SUFFIXES:
        return {"label": Path(text).name, "kind": "engine", "path": Path(text), "model": None, "meta": None}
    if suffix in (".pt", ".pth"):
        from edgeseg.models.checkpoint import load_model_file

        model, payload = load_model_file(text)
        meta = meta_from_checkpoint_dict(payload["config"], payload["meta"]) if payload is not None else default_meta(model)
        return {"label": Path(text).name, "kind": "checkpoint", "path": Path(text), "model": model.eval(), "meta": meta}
    if text in list_models(task=None):
        from edgeseg.data import get_dataset

        info = get_dataset(data, "val").info
        torch.manual_seed(0)
        model = create(text, num_classes=info.num_classes, in_channels=info.in_channels).eval()
        meta = default_meta(model)
        meta.class_names, meta.mean, meta.std = list(info.class_names), list(info.mean), list(info.std)
        return {"label": text, "kind": "zoo", "path": None, "model": model, "meta": meta}
    raise EdgeSegError(f"'{text}' is neither a .onnx/.engine/.pt file nor a zoo model",
                       "pass model files (a foreign .onnx needs its <model>.onnx.json sidecar) or names from 'edgeseg zoo'")


def bench_files(items: list[str | Path], data: str, variants=DEFAULT_VARIANTS, batch_size: int = 1,
                size: tuple[int, int] | None = None, calib_images: int = 32, calib_data: str | None = None,
                calib_method: str = "minmax", warmup: int = 2, repeats: int = 10, examples: int = 3,
                check_images: int = 4, exporter: str = "dynamo", progress: bool = True, log=print,
                profile: bool = False) -> dict:
    """Any mix of ONNX files, engines, checkpoints and zoo names on ``data``'s validation split: each model's
    variants (``variants``, derived from its FP32 ONNX or checkpoint) timed round-robin at ``size`` (default: the
    first validation image), their accuracy, and their agreement with the reference (PyTorch where there is a
    PyTorch model, else the FP32 ONNX) on ``check_images`` validation images. ``torch*`` variants need a PyTorch model;
    ``tensorrt`` variants are skipped with a note where TensorRT or a GPU is missing, ``torch-cuda*`` ones where CUDA is.
    ``profile``: per-layer time in each row (``profile_variant``). INT8 is calibrated on the
    training split of ``calib_data`` (default ``data``; see ``calibration_batches``). The report's
    ``examples`` (not JSON) holds the first ``examples`` validation images with each variant's prediction."""
    from edgeseg.evaluate import calibration_batches, dataset_for
    from edgeseg.export import export_onnx
    from edgeseg.parity import dataset_batches, random_batches
    from edgeseg.runtime import open_session, preprocess
    from edgeseg.runtime.prepost import batch_size_hw

    if not items:
        raise EdgeSegError("nothing to benchmark", "pass .onnx/.engine/.pt files or zoo names")
    runnable, notes = runnable_variants(variants)  # a note for each backend that cannot run here
    wanted = [(v, *parse_variant(v)) for v in runnable]
    missing = tensorrt_missing()  # engines need TensorRT whatever the variants
    load_before = loadavg()
    sources = [_resolve(item, data) for item in items]
    for src in sources:  # calibration data read (or refused) before anything is timed
        needs = src["kind"] != "engine" and any(p == "int8" for _, _, p in wanted)
        src["calibration"] = calibration_batches(src["meta"], data, calib_data, calib_images) if needs else []
    rows, shown, shapes = [], {"columns": []}, []
    with tempfile.TemporaryDirectory() as tmp:
        for k, src in enumerate(sources):
            log(f"[bench] {src['label']}")
            if src["kind"] == "engine" and missing:
                notes.append(f"{src['label']} skipped: {missing}")
                continue
            sessions, files = {}, {}
            work = Path(tmp) / str(k)
            work.mkdir()
            if src["kind"] == "engine":
                s = open_session(src["path"], "tensorrt")
                src["meta"] = s.meta
                sessions[f"tensorrt:{s.precision}"], files[f"tensorrt:{s.precision}"] = s, src["path"]
            meta, model = src["meta"], src["model"]
            fp32 = src["path"] if src["kind"] == "onnx" else work / f"{meta.model}.onnx"
            for v, backend, precision in wanted if src["kind"] != "engine" else []:
                if backend in TORCH_BACKENDS:
                    if model is not None:  # no PyTorch model behind an ONNX file
                        sessions[v] = open_torch_variant(model, meta, backend, precision)
                    continue
                if not fp32.exists():
                    export_onnx(model, fp32, meta=meta, exporter=exporter)
                files[v] = variant_file(fp32, backend, precision, src["calibration"], calib_method)
                sessions[v] = open_session(files[v], backend, **({"precision": precision} if backend == "tensorrt" else {}))
            if model is not None:
                ref_name = "torch:fp32"
                reference = sessions.get(ref_name) or open_session(model, "torch", meta=meta)
            elif src["kind"] == "onnx":
                ref_name = "onnxruntime:fp32"
                reference = sessions.get(ref_name) or open_session(fp32)
            else:
                ref_name = reference = None
            val = dataset_for(meta, data, "val")
            if size:
                batch = next(random_batches(meta, [size], batch_size))[0]
            else:
                batch = np.concatenate([preprocess(val.raw(i % len(val))[0], meta)[0] for i in range(batch_size)])
            shapes.append(list(batch_size_hw(batch, meta)))
            indices = list(range(min(examples, len(val))))
            params = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6 if model is not None else None
            r, preds = measure(sessions, files, meta, batch, warmup, repeats, reference, ref_name, val,
                               list(dataset_batches(val, meta, check_images)), indices, progress, params, profile)
            for row in r:
                row["source"] = src["label"]
            rows += r
            if indices and not shown.get("images"):
                shown.update(images=[val.raw(i)[0] for i in indices], task=meta.task, class_names=list(meta.class_names),
                             truth=[np.asarray(val.instances[i]) if meta.task == "instance" else val.raw(i)[1] for i in indices])
            for v, p in preds.items():
                shown["columns"].append({"title": f"{meta.model}\n{v}", "predictions": p, "task": meta.task,
                                         "num_classes": meta.num_classes, "class_names": list(meta.class_names)})
            del sessions, reference
            gc.collect()
    for n in notes:
        log(f"note: {n}")
    return {"machine": machine(), "size": shapes[0] if shapes else [], "batch": batch_size, "data": data, "rows": rows,
            "notes": notes, "loadavg": f"{load_before} at the start, {loadavg()} at the end", "examples": shown}


def bench_checkpoints(checkpoints: list[str | Path], data: str, variants=DEFAULT_VARIANTS, batch_size: int = 1,
                      size: tuple[int, int] | None = None, calib_images: int = 32, calib_method: str = "minmax",
                      warmup: int = 2, repeats: int = 10, progress: bool = True, log=print, profile: bool = False) -> dict:
    """Trained checkpoints: ``bench_files`` on them."""
    if not checkpoints:
        raise EdgeSegError("no checkpoints to benchmark", "pass checkpoint files")
    return bench_files(checkpoints, data, variants, batch_size, size, calib_images, calib_method=calib_method,
                       warmup=warmup, repeats=repeats, examples=0, progress=progress, log=log, profile=profile)


def loadavg() -> str | None:
    """/proc/loadavg's 1, 5 and 15-minute averages (Linux), to record how busy the machine was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def machine() -> dict:
    from edgeseg.sysinfo import machine_info

    return machine_info()


def markdown(report: dict, title: str) -> str:
    m = report["machine"]
    lines = [f"# {title}", "",
             f"Machine: {m['cpu']} ({m['cores']} cores, GPU: {m['gpu'] or 'none'}); torch {m['torch']} "
             f"({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, python {m['python']}, "
             f"OMP_WAIT_POLICY={m['omp_wait_policy']}" + (f"; load average {report['loadavg']}" if report.get("loadavg") else "") + ".",
             f"Input {report['batch']}×C×{report['size'][0]}×{report['size'][1]}"
             + (f" (the first validation image of {report['data']})" if report.get("data") else "")
             + "; latency per batch, median and p90 over round-robin runs of each model's variants; speed-up = PyTorch eager "
             "median / this median, measured side by side. Agreement with the reference (PyTorch where there is a PyTorch "
             "model, else the FP32 ONNX): argmax agreement (softmax), thresholded-foreground agreement (sigmoid), "
             "|A∩B|/|A∪B| of the masks of detections matched by box overlap (instance). Accuracy: mIoU (softmax), "
             "foreground IoU (sigmoid), mask AP (instance), PQ (panoptic).", "",
             "| model | backend | precision | median ms | p90 ms | speed-up vs torch | img/s | 1st-run peak MB | model MB | "
             "agreement (kind, vs) | accuracy |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    for r in report["rows"]:
        agree = r.get("agreement", r.get("agreement_vs_torch"))
        kind = f" ({r['agreement_kind']}, vs {r['agreement_reference']})" if agree is not None and r.get("agreement_kind") else ""
        lines.append(f"| {r['model']} | {r['backend']} | {r['precision']} | {r['latency_ms_median']:.1f} | "
                     f"{r['latency_ms_p90']:.1f} | {f(r.get('speedup_vs_torch'), '.2f')}{'×' if r.get('speedup_vs_torch') else ''} | "
                     f"{r['throughput_ips']:.2f} | {f(r['first_run_peak_mb'], '.0f')} | {f(r['model_mb'], '.3g')} | {f(agree, '.4f')}{kind} | "
                     f"{'–' if r['accuracy'] is None else r['accuracy_metric'] + ' ' + format(r['accuracy'], '.4f')} |")
    powered = [r for r in report["rows"] if r.get("fps_per_watt") is not None]
    if powered:
        lines += ["", "| model | backend | precision | img/s | mean W | max W | img/s per W |", "|---|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['model']} | {r['backend']} | {r['precision']} | {r['throughput_ips']:.2f} | {r['power_w_mean']:.2f} | "
                  f"{r['power_w_max']:.2f} | {r['fps_per_watt']:.2f} |" for r in powered]
    for r in report["rows"]:
        lines += profile_markdown(r)
    for n in report.get("notes") or []:
        lines += ["", f"Note: {n}."]
    if report.get("not_measured"):
        lines += ["", f"Not measured in this run (stopped first): {', '.join(report['not_measured'])}."]
    return "\n".join(lines) + "\n"


def profile_markdown(row: dict) -> list[str]:
    """A row's ``profile`` (``edgeseg bench --profile``) as markdown: its top op types, then its top layers."""
    p = row.get("profile")
    if not p:
        return []
    lines = ["", f"### {row['model']} {row['backend']} {row['precision']}: where the time goes", "",
             f"{p['tool']}; mean of {p['runs']} runs after warm-up, in a pass of its own (not the timed runs). "
             f"{'The' if p['layer_count'] is None else p['layer_count']} profiled {'ops' if p['layer_count'] is None else 'layers'} "
             f"sum to {p['layers_ms']:.3f} ms a run (the end-to-end median is {row['latency_ms_median']:.3f} ms).", "",
             "| op type | layers | ms per run | share |", "|---|---:|---:|---:|"]
    lines += [f"| {o['op']} | {'–' if o['layers'] is None else o['layers']} | {o['ms']:.3f} | {o['share']:.1%} |"
              for o in p["op_types"]]
    if p["layers"]:
        lines += ["", "| layer | op type | ms per run | share |", "|---|---|---:|---:|"]
        lines += [f"| {layer['name'].replace('|', '/')} | {layer['op']} | {layer['ms']:.3f} | {layer['share']:.1%} |"
                  for layer in p["layers"]]
    return lines


def write_report(report: dict, out_dir: str | Path, name: str, title: str) -> list[Path]:
    """``name``.json, .md and .png (the Pareto plot), and ``name``_examples.png where the report holds example
    predictions (``bench_files`` with a data set)."""
    from edgeseg.viz import examples_plot, pareto_plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    shown = report.get("examples") or {}
    write_text_atomic(paths[0], json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=2) + "\n")
    write_text_atomic(paths[1], markdown(report, title))
    pareto_plot(report["rows"], paths[2], title)
    if shown.get("images") and shown.get("columns"):
        paths.append(out / f"{name}_examples.png")
        examples_plot(shown, paths[3], f"{report.get('data', '')}: ground truth and each variant's prediction")
    return paths


def set_timing_environment() -> None:
    """Must run before torch/onnxruntime start their thread pools (the CLI calls it first)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
