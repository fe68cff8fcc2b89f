"""Benchmarks: models × backends × precisions at one input size.

Per variant: latency median/p90 (ms per batch), throughput, the peak memory the first run of a fresh
session adds (activations, arenas; weights are the model size), model file size,
argmax agreement with PyTorch, and mIoU where a data set is given. The variants of one model are
timed round-robin in one process (one run of each per round), so they share the machine's state
and their ratios are fair; OMP_WAIT_POLICY=PASSIVE and ORT's allow_spinning=0 keep one backend's
idle threads from stealing the cores of the next (see DESIGN.md's timing rules).
"""
from __future__ import annotations

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


def parse_variant(text: str) -> tuple[str, str]:
    backend, _, precision = text.partition(":")
    precision = precision or "fp32"
    if backend not in ("torch", "onnxruntime", "tensorrt") or precision not in ("fp32", "fp16", "int8"):
        raise EdgeSegError(f"bad variant '{text}'", "write backend:precision, e.g. onnxruntime:int8")
    if backend == "torch" and precision != "fp32":
        raise EdgeSegError(f"'{text}': the PyTorch reference runs in fp32 only", "use torch:fp32")
    return backend, precision


def _read_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def first_run_peak_mb(session: Session, batch: np.ndarray) -> float | None:
    """Peak resident memory the first run of a fresh session adds (activations, arenas, workspace),
    above what the process held before it. Linux only (else None). Call before any other run of the
    session: later runs reuse what the first one allocated."""
    import ctypes

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


def build_variants(model, meta, variants, workdir: Path, calibration: list[np.ndarray], calib_method: str,
                   exporter: str = "dynamo", sample=None) -> tuple[dict[str, Session], dict[str, Path]]:
    """Export once, derive the precisions, open one Session per variant."""
    from edgeseg.export import export_onnx
    from edgeseg.quant import convert_fp16, quantize_int8

    sessions: dict[str, Session] = {}
    files: dict[str, Path] = {}
    fp32 = workdir / f"{meta.model}.onnx"
    for v in variants:
        backend, precision = parse_variant(v)
        if backend == "torch":
            sessions[v] = open_session(model, "torch", meta=meta)
            continue
        if not fp32.exists():
            export_onnx(model, fp32, meta=meta, exporter=exporter, sample=sample)
        path = {"fp32": fp32, "fp16": workdir / f"{meta.model}_fp16.onnx", "int8": workdir / f"{meta.model}_int8.onnx"}[precision]
        if precision == "int8" and not path.exists():
            quantize_int8(fp32, path, calibration, calib_method)
        if precision == "fp16" and not path.exists():
            convert_fp16(fp32, path)
        files[v] = path
        sessions[v] = open_session(path, backend)
    return sessions, files


def bench_model(model, meta, variants, size: tuple[int, int], batch_size: int, workdir: Path,
                calibration: list[np.ndarray], calib_method: str = "minmax", dataset=None, warmup: int = 2,
                repeats: int = 10, progress: bool = True, exporter: str = "dynamo", batch: np.ndarray | None = None) -> list[dict]:
    """One row per variant. ``batch`` (default: random normal at ``size``) is what is timed; pass a real image
    for detectors, whose cost depends on what they find. Agreement with PyTorch: argmax agreement
    (semantic) or matched-mask agreement (instance, ``parity.compare_instances``); accuracy on ``dataset``:
    mIoU (semantic) or mask AP (instance)."""
    from edgeseg.evaluate import evaluate, evaluate_instances
    from edgeseg.parity import compare_instances

    instance = meta.task == "instance"
    if batch is None:
        batch = np.random.default_rng(0).standard_normal((batch_size, meta.in_channels, *size)).astype(np.float32)
    sessions, files = build_variants(model, meta, variants, workdir, calibration, calib_method, exporter)
    peaks = {v: first_run_peak_mb(s, batch) for v, s in sessions.items()}
    times = time_round_robin(sessions, batch, warmup, repeats, progress)
    reference = sessions.get("torch:fp32")
    ref_labels = reference.run(batch)[meta.logits_output].argmax(1) if reference and not instance else None

    def agreement(s: Session, precision: str) -> float | None:
        if reference is None:
            return None
        if instance:
            return compare_instances(reference, s, [batch], precision).mask_agreement
        return float((s.run(batch)[meta.logits_output].argmax(1) == ref_labels).mean())

    rows = []
    for v, s in sessions.items():
        backend, precision = parse_variant(v)
        t = np.asarray(times[v])
        row = {
            "model": meta.model, "task": meta.task, "backend": backend, "precision": precision,
            "batch": int(batch.shape[0]), "height": int(batch.shape[2]), "width": int(batch.shape[3]),
            "latency_ms_median": float(np.median(t)), "latency_ms_p90": float(np.percentile(t, 90)),
            "throughput_ips": float(batch.shape[0] * 1000 / np.median(t)), "runs": len(t),
            "first_run_peak_mb": peaks[v],
            "model_mb": (files[v].stat().st_size if v in files else
                         sum(p.numel() * p.element_size() for p in model.parameters())) / 1e6,
            "agreement_vs_torch": agreement(s, precision),
            "accuracy_metric": "mask AP" if instance else "mIoU", "accuracy": None, "miou": None,
        }
        if dataset is not None and instance:
            scores = evaluate_instances(s, dataset, progress=False)
            row.update(accuracy=scores["segm"].ap, mask_ap50=scores["segm"].ap50, box_ap=scores["bbox"].ap)
        elif dataset is not None:
            row["miou"] = row["accuracy"] = evaluate(s, dataset, progress=False).miou
        rows.append(row)
    if reference:
        t_ref = next(r["latency_ms_median"] for r in rows if r["backend"] == "torch")
        for r in rows:
            r["speedup_vs_torch"] = t_ref / r["latency_ms_median"]
    del sessions
    gc.collect()
    return rows


def run_bench(models: list[str], variants=DEFAULT_VARIANTS, size=(512, 512), batch_size: int = 1,
              num_classes: int = 21, in_channels: int = 3, calib_images: int = 4, calib_method: str = "minmax",
              warmup: int = 2, repeats: int = 10, workdir: str | Path | None = None, progress: bool = True,
              log=print) -> dict:
    """Random-initialised zoo models (latency only; accuracy needs a trained checkpoint: bench_checkpoint)."""
    import torch

    from edgeseg.data.synthetic import make_scene, synthetic_info
    from edgeseg.export import default_meta
    from edgeseg.models import create, list_models

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
                                warmup=warmup, repeats=repeats, progress=progress)
            for f in work.glob(f"{name}*.onnx"):
                f.unlink()
    return {"machine": machine(), "size": list(size), "batch": batch_size, "rows": rows}


def bench_checkpoints(checkpoints: list[str | Path], data: str, variants=DEFAULT_VARIANTS, batch_size: int = 1,
                      size: tuple[int, int] | None = None, calib_images: int = 32, calib_method: str = "minmax",
                      warmup: int = 2, repeats: int = 10, progress: bool = True, log=print) -> dict:
    """Trained models: latency at ``size`` (default: the data set's image size) and mIoU of every
    variant on the data set's validation split; INT8 calibrated on its training split."""
    from edgeseg.evaluate import dataset_for
    from edgeseg.models.checkpoint import load_checkpoint
    from edgeseg.runtime import meta_from_checkpoint_dict, preprocess

    if not checkpoints:
        raise EdgeSegError("no checkpoints to benchmark", "pass --checkpoints a.pt[,b.pt]")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in checkpoints:
            log(f"[bench] {ckpt}")
            model, payload = load_checkpoint(ckpt)
            meta = meta_from_checkpoint_dict(payload["config"], payload["meta"])
            val, train = dataset_for(meta, data, "val"), dataset_for(meta, data, "train")
            step = max(1, len(train) // calib_images)
            calibration = [preprocess(train.raw(i)[0], meta)[0] for i in range(0, len(train), step)][:calib_images]
            # Timed on validation images (a detector's cost depends on what it finds); --size: random input.
            batch = None if size else np.concatenate([preprocess(val.raw(i % len(val))[0], meta)[0] for i in range(batch_size)])
            shape = size or tuple(batch.shape[-2:])
            work = Path(tmp) / Path(ckpt).stem
            work.mkdir()
            rows += bench_model(model, meta, variants, shape, batch_size, work, calibration, calib_method,
                                dataset=val, warmup=warmup, repeats=repeats, progress=progress, batch=batch)
    return {"machine": machine(), "size": list(shape), "batch": batch_size, "data": data, "rows": rows}


def machine() -> dict:
    from edgeseg.sysinfo import machine_info

    return machine_info()


def markdown(report: dict, title: str) -> str:
    m = report["machine"]
    lines = [f"# {title}", "",
             f"Machine: {m['cpu']} ({m['cores']} cores, GPU: {m['gpu'] or 'none'}); torch {m['torch']} "
             f"({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, python {m['python']}, "
             f"OMP_WAIT_POLICY={m['omp_wait_policy']}.",
             f"Input {report['batch']}×C×{report['size'][0]}×{report['size'][1]}; latency per batch, median and p90 over "
             "round-robin runs; speed-up = PyTorch eager median / this median, measured side by side. Agreement vs torch: "
             "argmax agreement (semantic), or |A∩B|/|A∪B| of the binarised masks of detections matched by box overlap "
             "(instance).", "",
             "| model | backend | precision | median ms | p90 ms | speed-up vs torch | img/s | 1st-run peak MB | model MB | "
             "agreement vs torch | accuracy |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    for r in report["rows"]:
        lines.append(f"| {r['model']} | {r['backend']} | {r['precision']} | {r['latency_ms_median']:.1f} | "
                     f"{r['latency_ms_p90']:.1f} | {f(r.get('speedup_vs_torch'), '.2f')}× | {r['throughput_ips']:.2f} | "
                     f"{f(r['first_run_peak_mb'], '.0f')} | {r['model_mb']:.1f} | {f(r['agreement_vs_torch'], '.4f')} | "
                     f"{'–' if r['accuracy'] is None else r['accuracy_metric'] + ' ' + format(r['accuracy'], '.4f')} |")
    if report.get("not_measured"):
        lines += ["", f"Not measured in this run (stopped first): {', '.join(report['not_measured'])}."]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path, name: str, title: str) -> list[Path]:
    from edgeseg.viz import pareto_plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    write_text_atomic(paths[0], json.dumps(report, indent=2) + "\n")
    write_text_atomic(paths[1], markdown(report, title))
    pareto_plot(report["rows"], paths[2], title)
    return paths


def set_timing_environment() -> None:
    """Must run before torch/onnxruntime start their thread pools (the CLI calls it first)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
