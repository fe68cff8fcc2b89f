"""The harness ``edgeseg bench`` runs: per model, its variants' sessions (``variants``) timed round-robin (``timing``),
their agreement and accuracy (``accuracy``), and with ``profile``/``stages`` where their time goes (``profile``); one
report row per variant (``report`` writes it). The package docstring says what each number means."""
from __future__ import annotations

import contextlib
import gc
import tempfile
from pathlib import Path

import numpy as np

from edgeseg.bench.accuracy import accuracy, agreement, predictions
from edgeseg.bench.profile import profile_variant, stage_times, stages_missing
from edgeseg.bench.timing import Probe, first_run_peak_mb, loadavg, machine, time_round_robin
from edgeseg.bench.variants import (DEFAULT_VARIANTS, TORCH_BACKENDS, build_variants, open_torch_variant, parse_variant,
                                    runnable_variants, tensorrt_missing, variant_file)
from edgeseg.errors import EdgeSegError
from edgeseg.runtime import Session


def measure(sessions: dict[str, Session], files: dict[str, Path], meta, batch: np.ndarray, warmup: int, repeats: int,
            reference: Session | None = None, reference_name: str | None = None, dataset=None,
            check_batches: list | None = None, examples: list[int] = (), progress: bool = True,
            model_mb: float | None = None, profile: bool = False, probe: Probe | None = None,
            stages: bool = False) -> tuple[list[dict], dict]:
    """One row per variant of one model, timed round-robin; with ``dataset`` its accuracy, and the predictions on
    the ``examples`` indices (second return value, by variant). Agreement is against ``reference`` on
    ``check_batches`` (default: the timed batch). ``profile``: each row's ``profile`` is its per-layer time
    (``profile_variant``), measured in a pass of its own after the timed runs. ``probe`` (e.g. a power sampler)
    samples while the variants are timed; where only one variant is timed its ``fields`` join that row. ``stages``:
    each row's ``stages`` is its graph's time stage by stage (``stage_times``), or why it has none (``skipped``)."""
    from edgeseg.runtime.prepost import batch_size_hw

    height, width = batch_size_hw(batch, meta)
    peaks = {v: first_run_peak_mb(s, batch) for v, s in sessions.items()}
    with probe if probe is not None else contextlib.nullcontext():
        times = time_round_robin(sessions, batch, warmup, repeats, progress)
    profiles = {v: profile_variant(s, batch, warmup, repeats) for v, s in sessions.items()} if profile else {}
    staged = {v: {"skipped": why} if (why := stages_missing(s)) else stage_times(s, batch, warmup, repeats)
              for v, s in sessions.items()} if stages else {}
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
            # an INT8 graph that failed its check before writing (edgeseg.quant) is benched under its FAILED name
            "failed_check": v in files and ".FAILED-CHECK" in files[v].name,
            "agreement": agree, "agreement_kind": kind, "agreement_reference": reference_name if reference else None,
            "agreement_vs_torch": agree if reference_name == "torch:fp32" else None,
            "accuracy_metric": None, "accuracy": None, "miou": None,
        }
        if v in profiles:
            row["profile"] = profiles[v]
        if v in staged:
            row["stages"] = staged[v]
        if dataset is not None:
            row.update(accuracy(s, dataset))
            if examples:
                shown[v] = predictions(s, dataset, list(examples))
        if probe is not None and len(sessions) == 1:  # one variant timed: the samples are its own
            row.update(probe.fields(row["throughput_ips"]))
        rows.append(row)
    t_ref = next((r["latency_ms_median"] for r in rows if r["backend"] == "torch"), None)
    for r in rows:
        r["speedup_vs_torch"] = t_ref / r["latency_ms_median"] if t_ref else None
    return rows, shown


def bench_model(model, meta, variants, size: tuple[int, int], batch_size: int, workdir: Path,
                calibration: list[np.ndarray], calib_method: str = "minmax", dataset=None, warmup: int = 2,
                repeats: int = 10, progress: bool = True, exporter: str = "dynamo", batch: np.ndarray | None = None,
                profile: bool = False, probe: Probe | None = None, stages: bool = False) -> list[dict]:
    """One row per variant of a PyTorch model. ``batch`` (default: random normal at ``size``) is what is timed; pass a
    real image for detectors, whose cost depends on what they find. Agreement with PyTorch and accuracy on
    ``dataset`` as ``measure`` gives them."""
    if batch is None:
        batch = np.random.default_rng(0).standard_normal((batch_size, meta.in_channels, *size)).astype(np.float32)
    sessions, files = build_variants(model, meta, variants, workdir, calibration, calib_method, exporter)
    params_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    rows, _ = measure(sessions, files, meta, batch, warmup, repeats, sessions.get("torch:fp32"), "torch:fp32", dataset,
                      progress=progress, model_mb=params_mb, profile=profile, probe=probe, stages=stages)
    del sessions
    gc.collect()
    return rows


def run_bench(models: list[str], variants=DEFAULT_VARIANTS, size=(512, 512), batch_size: int = 1,
              num_classes: int = 21, in_channels: int = 3, calib_images: int = 4, calib_method: str = "minmax",
              warmup: int = 2, repeats: int = 10, workdir: str | Path | None = None, progress: bool = True,
              log=print, profile: bool = False, probe: Probe | None = None, stages: bool = False) -> dict:
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
                                warmup=warmup, repeats=repeats, progress=progress, profile=profile, probe=probe,
                                stages=stages)
            for f in work.glob(f"{name}*.onnx"):
                f.unlink()
    for n in notes:
        log(f"note: {n}")
    return {"machine": machine(), "size": list(size), "batch": batch_size, "rows": rows, "notes": notes}


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def _resolve(item: str | Path, data: str) -> dict:
    """What one item of ``edgeseg bench`` is: an ONNX file (edgeseg's, or foreign with its sidecar), an engine, a
    checkpoint, or a zoo name (random weights, sized to ``data``'s classes and channels: ``zoo_model``)."""
    from edgeseg.export import default_meta
    from edgeseg.models import list_models
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
        model, meta = zoo_model(text, data)
        return {"label": text, "kind": "zoo", "path": None, "model": model, "meta": meta}
    raise EdgeSegError(f"'{text}' is neither a .onnx/.engine/.pt file nor a zoo model",
                       "pass model files (a foreign .onnx needs its <model>.onnx.json sidecar) or names from 'edgeseg zoo'")


def zoo_model(name: str, data: str):
    """A zoo model with random weights (seed 0) sized to ``data``'s classes and channels (a panoptic one to its thing
    classes, where the data set names them), in eval mode, and its metadata with the data set's class names and
    normalisation."""
    import torch

    from edgeseg.data import get_dataset
    from edgeseg.export import default_meta
    from edgeseg.models import create, model_task

    info = get_dataset(data, "val").info
    things = {"thing_classes": list(info.thing_classes)} if model_task(name) == "panoptic" and info.thing_classes else {}
    torch.manual_seed(0)
    model = create(name, num_classes=info.num_classes, in_channels=info.in_channels, **things).eval()
    meta = default_meta(model)
    meta.class_names, meta.mean, meta.std = list(info.class_names), list(info.mean), list(info.std)
    return model, meta


def bench_files(items: list[str | Path], data: str, variants=DEFAULT_VARIANTS, batch_size: int = 1,
                size: tuple[int, int] | None = None, calib_images: int = 32, calib_data: str | None = None,
                calib_method: str = "minmax", warmup: int = 2, repeats: int = 10, examples: int = 3,
                check_images: int = 4, exporter: str = "dynamo", progress: bool = True, log=print,
                profile: bool = False, probe: Probe | None = None, stages: bool = False) -> dict:
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
    from edgeseg.runtime import open_session
    from edgeseg.runtime.prepost import batch_size_hw, model_input

    if not items:
        raise EdgeSegError("nothing to benchmark", "pass .onnx/.engine/.pt files or zoo names")
    runnable, notes = runnable_variants(variants)  # a note for each backend that cannot run here
    wanted = [(v, *parse_variant(v)) for v in runnable]
    missing = tensorrt_missing()  # engines need TensorRT whatever the variants
    load_before = loadavg()
    sources = [_resolve(item, data) for item in items]
    if not calib_data and any(p == "int8" for _, _, p in wanted) and sources and sources[0]["kind"] != "engine" \
            and dataset_for(sources[0]["meta"], data, "train").info.notes.get("unsplit"):
        # INT8 would calibrate on the very images it is scored on: the other variants run, INT8 is left out
        wanted = [w for w in wanted if w[2] != "int8"]
        notes.append(f"int8 variants left out: {data} has no train/ split, so INT8 would calibrate on the scored images; "
                     "pass --calib-data with other images to include them")
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
                batch = np.concatenate([model_input(val.raw(i % len(val))[0], meta) for i in range(batch_size)])
            shapes.append(list(batch_size_hw(batch, meta)))
            indices = list(range(min(examples, len(val))))
            params = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6 if model is not None else None
            r, preds = measure(sessions, files, meta, batch, warmup, repeats, reference, ref_name, val,
                               list(dataset_batches(val, meta, check_images)), indices, progress, params, profile,
                               probe, stages)
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
                      warmup: int = 2, repeats: int = 10, progress: bool = True, log=print, profile: bool = False,
                      probe: Probe | None = None, stages: bool = False) -> dict:
    """Trained checkpoints: ``bench_files`` on them."""
    if not checkpoints:
        raise EdgeSegError("no checkpoints to benchmark", "pass checkpoint files")
    return bench_files(checkpoints, data, variants, batch_size, size, calib_images, calib_method=calib_method,
                       warmup=warmup, repeats=repeats, examples=0, progress=progress, log=log, profile=profile,
                       probe=probe, stages=stages)


def reason(e: BaseException) -> str:
    """Why something was not measured, in one line."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:240]}"


def measure_each(names: list[str], measure_one, report: dict, write, log=print, keep_going: bool = True) -> dict:
    """The benchmark drivers' loop: ``measure_one(name)`` for each name in turn, its result (a dict with ``model``, or
    nothing) replacing that model's entry in ``report["models"]``, and ``write(report)`` after each, so a stopped run
    keeps what it measured and ``report["not_measured"]`` lists the rest. With ``keep_going`` a model that fails is a
    note in ``report["notes"]`` (why, in one line) and the others still run."""
    report["not_measured"] = list(names)
    for name in names:
        try:
            result = measure_one(name)
            if result:
                report["models"] = [r for r in report["models"] if r["model"] != name] + [result]
        except Exception as e:  # noqa: BLE001  one model's failure is reported, the others still run
            if not keep_going:
                raise
            report["notes"].append(f"{name}: not measured ({reason(e)})")
            log(report["notes"][-1])
        report["not_measured"].remove(name)
        write(report)
    return report
